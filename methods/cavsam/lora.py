"""Per-image LoRA of the Stable Diffusion UNet (DBST), through diffusers' PEFT adapters.

Where the LoRA sits and how it trains follow DiffMorpher (``utils/lora_utils.py``,
``train_lora``): a rank-``r`` LoRA on the query, key, value and output projections of every
UNet attention layer (self- and cross-attention), scale 1 (alpha = rank), the down
matrix drawn from N(0, 1/r) and the up matrix zero; AdamW (betas 0.9/0.999, eps 1e-8,
weight decay ``wd``) at a constant ``lr`` for ``steps`` steps; each step draws a latent
from the VAE posterior of the one image, a noise and a timestep uniform over the training
schedule, and fits the UNet's noise prediction (MSE). Randomness comes from one generator
seeded identically for every image (DiffMorpher reseeds with 0 before each training), so a
LoRA depends only on the image, the prompt and the settings: the cache key.

Two adapters exist: ``dbst`` (trained, and the interpolated LoRA in ``parameters`` mode)
and ``dbst_target`` (the second endpoint in ``deltas`` mode). Between uses the adapters
are disabled, so the UNet computes exactly its base function.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

ADAPTER = "dbst"
SECOND = "dbst_target"
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
INTERPOLATIONS = ("parameters", "deltas")

LoRAState = dict[str, torch.Tensor]  # "<module>.A" (r, in) and "<module>.B" (out, r)


class UNetLoRA:
    """LoRA adapters on ``unet``'s attention projections, of rank ``rank``."""

    def __init__(self, unet, rank: int) -> None:
        from peft import LoraConfig

        self.unet, self.rank = unet, rank
        self._config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                  target_modules=list(TARGETS))
        present = [a for a in (ADAPTER, SECOND) if a in getattr(unet, "peft_config", {})]
        if present:  # adapters of an earlier UNetLoRA on the same UNet: start afresh
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "deleted an active adapter"
                unet.delete_adapters(present)
        unet.add_adapter(self._config, adapter_name=ADAPTER)
        self.layers = self._layers()
        self.off()

    def _layers(self) -> dict:
        from peft.tuners.lora import LoraLayer

        return {name: m for name, m in self.unet.named_modules() if isinstance(m, LoraLayer)}

    def _ensure_second(self) -> None:
        if SECOND not in self.unet.peft_config:
            with warnings.catch_warnings():
                # PEFT warns that a model with one adapter gets a second: intended here.
                warnings.simplefilter("ignore", UserWarning)
                self.unet.add_adapter(self._config, adapter_name=SECOND)
            self.unet.requires_grad_(False)

    # --- parameters ----------------------------------------------------------------------
    def parameters(self, adapter: str = ADAPTER) -> list[torch.nn.Parameter]:
        return [p for m in self.layers.values()
                for p in (m.lora_A[adapter].weight, m.lora_B[adapter].weight)]

    def state(self, adapter: str = ADAPTER) -> LoRAState:
        """Detached copies of the adapter's matrices."""
        out = {}
        for name, m in self.layers.items():
            out[f"{name}.A"] = m.lora_A[adapter].weight.detach().clone()
            out[f"{name}.B"] = m.lora_B[adapter].weight.detach().clone()
        return out

    @torch.no_grad()
    def load(self, state: LoRAState, adapter: str = ADAPTER) -> None:
        for name, m in self.layers.items():
            m.lora_A[adapter].weight.copy_(state[f"{name}.A"])
            m.lora_B[adapter].weight.copy_(state[f"{name}.B"])

    def fresh(self, generator: torch.Generator) -> LoRAState:
        """A new initialisation drawn from ``generator``: down ~ N(0, 1/r), up = 0."""
        out = {}
        for name, m in self.layers.items():
            a, b = m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight
            out[f"{name}.A"] = torch.randn(a.shape, generator=generator, device=a.device,
                                           dtype=a.dtype) / self.rank
            out[f"{name}.B"] = torch.zeros_like(b)
        return out

    # --- activation ------------------------------------------------------------------------
    def use(self, state: LoRAState) -> None:
        """Run the UNet with one LoRA."""
        self.load(state)
        self.unet.enable_adapters()
        self.unet.set_adapters([ADAPTER], weights=[1.0])

    def use_mix(self, lora0: LoRAState, lora1: LoRAState, alpha: float, mode: str) -> None:
        """Run the UNet with the LoRA between ``lora0`` (alpha 0) and ``lora1`` (alpha 1).

        ``parameters`` (DiffMorpher's ``load_lora``): every LoRA matrix is interpolated,
        so the weight change is ((1-a) B0 + a B1)((1-a) A0 + a A1). ``deltas``: the weight
        changes themselves are interpolated, (1-a) B0 A0 + a B1 A1 (two adapters, scaled).
        """
        if mode == "parameters":
            self.use({k: (1 - alpha) * lora0[k] + alpha * lora1[k] for k in lora0})
        elif mode == "deltas":
            self._ensure_second()
            self.load(lora0, ADAPTER)
            self.load(lora1, SECOND)
            self.unet.enable_adapters()
            self.unet.set_adapters([ADAPTER, SECOND], weights=[1.0 - alpha, alpha])
        else:
            raise ValueError(f"LoRA interpolation must be one of {INTERPOLATIONS}; got {mode!r}")

    @torch.no_grad()
    def off(self) -> None:
        """Back to the base UNet: adapters disabled and their up matrices zeroed (a zero up
        matrix is a zero weight change even if something re-enables an adapter)."""
        for m in self.layers.values():
            for adapter, layer in m.lora_B.items():
                layer.weight.zero_()
                m.lora_A[adapter].weight.zero_()
        self.unet.disable_adapters()
        self.unet.requires_grad_(False)


def train_lora(lora: UNetLoRA, sd, image: torch.Tensor, text: torch.Tensor, *, steps: int,
               lr: float, weight_decay: float, seed: int) -> LoRAState:
    """Fit a fresh LoRA to one image; returns its matrices (the UNet is left with it on).

    ``image``: (1, 3, H, W) float in [-1, 1] on the UNet's device; ``text``: (1, L, D)
    prompt embedding. Gradients are enabled here whatever the caller's mode.
    """
    generator = torch.Generator(device=sd.device).manual_seed(seed)
    lora.use(lora.fresh(generator))
    params = lora.parameters()
    scheduler, unet = sd.scheduler, sd.unet
    n_train = int(scheduler.config.num_train_timesteps)
    with torch.no_grad():
        posterior = sd.vae.encode(image).latent_dist
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay,
                                  eps=1e-8)
    # The UNet stays in eval mode: it has no dropout or batch statistics (Stable Diffusion's
    # dropout is 0), so DiffMorpher's unet.train() computes the same function.
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        for _ in range(steps):
            x0 = posterior.sample(generator=generator) * sd.scaling_factor
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            t = torch.randint(0, n_train, (1,), generator=generator, device=x0.device)
            noisy = scheduler.add_noise(x0, noise, t)
            pred = unet(noisy, t, encoder_hidden_states=text).sample
            if scheduler.config.prediction_type == "v_prediction":
                target = scheduler.get_velocity(x0, noise, t)
            else:
                target = noise
            loss = F.mse_loss(pred.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for p in params:
            p.requires_grad_(False)
    return lora.state()
