"""Method adapters. Registering only names and import paths keeps this import cheap."""

from refseg_bench.registry import METHODS

METHODS.register("oracle", "refseg_bench.methods.baselines:Oracle",
                 "returns the query label; must score 100 (end-to-end scorer check)")
METHODS.register("empty", "refseg_bench.methods.baselines:Empty",
                 "predicts no foreground; must score 0 (end-to-end scorer check)")
METHODS.register("proto", "refseg_bench.methods.baselines:Prototype",
                 "weight-free baseline: colour/texture prototypes from the references")
METHODS.register("persam", "refseg_bench.methods.persam.adapter:PerSAM",
                 "PerSAM: training-free SAM personalisation (location prior, guided decoder)")
METHODS.register("persam_f", "refseg_bench.methods.persam.adapter:PerSAMF",
                 "PerSAM-F: PerSAM with two mask weights fitted on the references")
METHODS.register("vrpsam", "refseg_bench.methods.vrpsam.adapter:VRPSAM",
                 "VRP-SAM: trained visual reference prompt encoder in front of a frozen SAM")
METHODS.register("cavsam", "refseg_bench.methods.cavsam.adapter:CAVSAM",
                 "CAV-SAM: reference-target pseudo video for SAM 2 (diffusion frames, neck tuning)")
METHODS.register("fss_sam2", "refseg_bench.methods.fss_sam2.adapter:FSSAM",
                 "FSSAM (FSS-SAM2): SAM 2 memory path with DINOv2 pseudo prompts, trained per fold")
METHODS.register("matcher", "refseg_bench.methods.matcher.adapter:Matcher",
                 "Matcher: DINOv2 patch matching prompts SAM; proposals scored and merged")
