from refseg_bench.cli import main

raise SystemExit(main())
