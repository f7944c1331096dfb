"""DBST, diffusion-based semantic transition: the in-between frames of the pseudo video.

For a (reference, target) pair: one LoRA per image (:mod:`.lora`), each image's DDIM
inversion under its own LoRA, then per interpolation coefficient alpha: the LoRAs
interpolated, the inverted latents slerped with AdaIN (:mod:`.latents`), the prompt
embeddings interpolated, DDIM denoising and VAE decoding. This is DiffMorpher's pipeline
(``model.py``: ``ddim_inversion``, ``cal_latent``, ``latent2image``) without its
self-attention replacement and without its perceptual re-scheduling of alpha, which
CAV-SAM removes; the denoiser steps with DDIM as the paper says (DiffMorpher steps with the
model folder's own scheduler). No classifier-free guidance (DiffMorpher's scale 1).

LoRAs and inverted latents are cached by image content (with the prompt and every setting
that changes them), so an image reused across episodes costs once.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
import torch
from PIL import Image

from refseg_bench.methods.cavsam.latents import slerp
from refseg_bench.methods.cavsam.lora import UNetLoRA, train_lora
from refseg_bench.methods.cavsam.settings import DBSTSpec
from refseg_bench.methods.cavsam.timing import Stopwatch
from refseg_bench.models.cache import EmbeddingCache, image_sha256


def image_to_tensor(image: np.ndarray, resolution: int, resize: str) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float in [-1, 1]. ``square``: stretched to
    ``resolution`` x ``resolution`` (DiffMorpher's ``get_img``, used for inversion);
    ``short_side``: the shorter side scaled to ``resolution``, aspect kept (the resize of
    DiffMorpher's LoRA training). Bilinear with antialiasing, as torchvision on PIL images."""
    h, w = image.shape[:2]
    if resize == "square":
        size = (resolution, resolution)
    elif resize == "short_side":
        s = resolution / min(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s))) if h != w else (resolution,) * 2
    else:
        raise ValueError(f"resize must be 'square' or 'short_side'; got {resize!r}")
    resized = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR), np.float32)
    return torch.from_numpy(resized / 127.5 - 1.0).permute(2, 0, 1)[None]


def ddim_invert(eps_fn, latent: torch.Tensor, scheduler, steps: int) -> torch.Tensor:
    """Deterministic DDIM inversion over ``steps`` timesteps (DiffMorpher's
    ``ddim_inversion``): from the clean ``latent`` to the noise latent, the noise predicted
    at each next timestep by ``eps_fn(latent, t)``."""
    scheduler.set_timesteps(steps)
    ascending = scheduler.timesteps.flip(0)
    cumprod = scheduler.alphas_cumprod
    for i, t in enumerate(ascending):
        a_t = cumprod[t]
        a_prev = cumprod[ascending[i - 1]] if i > 0 else scheduler.final_alpha_cumprod
        eps = eps_fn(latent, t)
        x0 = (latent - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        latent = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    return latent


def ddim_sample(eps_fn, latent: torch.Tensor, scheduler, steps: int) -> torch.Tensor:
    """Deterministic DDIM denoising (eta 0) over ``steps`` timesteps."""
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        latent = scheduler.step(eps_fn(latent, t), t, latent, eta=0.0).prev_sample
    return latent


class DBST:
    """In-between frames for one Stable Diffusion (:class:`~refseg_bench.models.diffusion.
    StableDiffusion`) under ``spec``; ``watch`` accumulates the time of each stage."""

    def __init__(self, sd, spec: DBSTSpec, watch: Stopwatch, cache_bytes: int) -> None:
        if sd.scheduler.config.prediction_type != "epsilon":
            raise ValueError("DBST's DDIM inversion needs a noise-predicting (epsilon) model; "
                             f"this one predicts {sd.scheduler.config.prediction_type!r}")
        self.sd, self.spec, self.watch = sd, spec, watch
        self.lora = UNetLoRA(sd.unet, spec.lora_rank) if spec.lora else None
        self.cache = EmbeddingCache(max_bytes=cache_bytes)
        self.counts = {"lora_trained": 0, "lora_cached": 0, "inverted": 0, "inversion_cached": 0}
        self._settings = hashlib.sha256(
            f"{sd.identity}|{sd.resolution}|{asdict(spec)}".encode()).hexdigest()[:16]
        self._texts: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        """(1, 77, D) last hidden state of the text encoder for ``prompt``."""
        if prompt not in self._texts:
            tok = self.sd.tokenizer
            ids = tok(prompt, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(self.sd.device)
            self._texts[prompt] = self.sd.text_encoder(ids)[0]
        return self._texts[prompt]

    def _key(self, kind: str, image: np.ndarray, prompt: str) -> str:
        text = f"{kind}|{image_sha256(image)}|{prompt}|{self._settings}"
        return hashlib.sha256(text.encode()).hexdigest()

    def image_lora(self, image: np.ndarray, prompt: str):
        """The LoRA of ``image`` under ``prompt`` (trained once, then from the cache)."""
        key = self._key("lora", image, prompt)
        found = self.cache.get(key)
        if found is not None:
            self.counts["lora_cached"] += 1
            return found
        s = self.spec
        with self.watch.section("lora"):
            x = image_to_tensor(image, self.sd.resolution, s.lora_resize).to(self.sd.device)
            state = train_lora(self.lora, self.sd, x, self.text_embedding(prompt),
                               steps=s.lora_steps, lr=s.lora_lr, weight_decay=s.lora_weight_decay,
                               seed=s.seed)
            self.lora.off()
        self.counts["lora_trained"] += 1
        self.cache.put(key, state)
        return state

    def _eps(self, text: torch.Tensor):
        return lambda latent, t: self.sd.unet(latent, t, encoder_hidden_states=text).sample

    @torch.no_grad()
    def inverted(self, image: np.ndarray, prompt: str, lora_state) -> torch.Tensor:
        """(1, 4, r/f, r/f) noise latent of ``image`` by DDIM inversion under its own LoRA."""
        key = self._key("inversion", image, prompt)
        found = self.cache.get(key)
        if found is not None:
            self.counts["inversion_cached"] += 1
            return found
        with self.watch.section("inversion"):
            x = image_to_tensor(image, self.sd.resolution, "square").to(self.sd.device)
            latent = self.sd.vae.encode(x).latent_dist.mean * self.sd.scaling_factor
            if lora_state is not None:
                self.lora.use(lora_state)
            try:
                latent = ddim_invert(self._eps(self.text_embedding(prompt)), latent,
                                     self.sd.scheduler, self.spec.inversion_steps)
            finally:
                self.restore()
        self.counts["inverted"] += 1
        self.cache.put(key, latent)
        return latent

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """Latent -> (r, r, 3) uint8 RGB (values truncated, as DiffMorpher's latent2image)."""
        image = self.sd.vae.decode(latent / self.sd.scaling_factor).sample
        image = (image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return (image * 255).astype(np.uint8)

    @torch.no_grad()
    def frames(self, reference: np.ndarray, target: np.ndarray, prompt: str,
               alphas: list[float]) -> list[np.ndarray]:
        """One generated (r, r, 3) uint8 frame per alpha, from ``reference`` (alpha 0)
        towards ``target`` (alpha 1), both (H, W, 3) uint8 under the same ``prompt``."""
        if not alphas:
            return []
        lora0 = self.image_lora(reference, prompt) if self.lora else None
        lora1 = self.image_lora(target, prompt) if self.lora else None
        z0 = self.inverted(reference, prompt, lora0)
        z1 = self.inverted(target, prompt, lora1)
        e0 = e1 = self.text_embedding(prompt)
        out = []
        with self.watch.section("generation"):
            try:
                for alpha in alphas:
                    if self.lora:
                        self.lora.use_mix(lora0, lora1, alpha, self.spec.lora_interpolation)
                    latent = slerp(z0, z1, alpha, self.spec.adain)
                    text = (1 - alpha) * e0 + alpha * e1
                    latent = ddim_sample(self._eps(text), latent, self.sd.scheduler,
                                         self.spec.inversion_steps)
                    out.append(self.decode(latent))
            finally:
                self.restore()
        return out

    def restore(self) -> None:
        """The UNet back to its base weights' function (LoRA off)."""
        if self.lora is not None:
            self.lora.off()


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 at ``size`` = (H, W), bilinear."""
    if frame.shape[:2] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))
