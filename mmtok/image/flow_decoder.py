"""Rectified-flow decoder for the 1D tokenizers: ``flextok_*_flow`` / ``titok_*_flow`` variants.

The encoder and quantizer are the 1D tokenizer's (:mod:`mmtok.image.titok`); the decoder is
generative: a DiT-style velocity model predicts ``v = noise - x0`` at noise level ``sigma``
from ``x_sigma = sigma * noise + (1 - sigma) * x0``, conditioned on the token prefix. Sampling
integrates the flow from pure noise with diffusers' ``FlowMatchEulerDiscreteScheduler``.

    tok = mmtok.create_tokenizer("flextok_t32_fsq_flow")
    codes = tok.encode(x)                                        # (B, 32)
    x_hat = tok.decode(codes[:, :8], steps=25, cfg_scale=2.0, seed=0)   # same seed -> same image

Space: ``flow_space="pixel"`` (the flow runs on the image) or ``"latent"`` (on the latents of
a diffusers ``AutoencoderKL`` read from the local folder ``vae_path``; never downloaded).

Conditioning: the prefix tokens are projected to the model width and concatenated to the
patch sequence (every block attends to them); AdaLN-zero modulation takes the timestep
embedding plus the mean of the projected tokens. Classifier-free guidance: in training the
whole condition is replaced by a learned null token with probability ``cfg_dropout``; at
sampling ``v = v_null + s * (v_cond - v_null)``.

REPA (``repa={...}``): the decoder's (or encoder's) patch features at one block, through a
small MLP, are aligned (negative cosine) with the patch features of a frozen timm ViT read
from a local weights file (:mod:`mmtok.losses.repa`). The frozen networks (VAE, REPA
encoder) are not parameters of the tokenizer: they are never saved with it, never averaged
by EMA and never optimised.

Training (``tok(x)``) returns ``TokenizerOutput`` with ``loss`` = quantizer loss +
``flow_weight * flow + repa_weight * repa`` (logged as ``loss/flow``, ``loss/repa``) and
``recon`` = the one-step estimate ``x_sigma - sigma * v`` (pixels), so pixel / perceptual
terms of ``mmtok.losses`` still apply in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from torch import Tensor, nn

from mmtok.config import ConfigError, build_config
from mmtok.image.common import parse_image_size
from mmtok.image.titok import GridPosEmbed, TiTokConfig, TiTokTokenizer
from mmtok.image.variants_1d import FLEXTOK_VARIANTS, SIZES, variant_defaults
from mmtok.registry import register_family, register_tokenizer
from mmtok.tokenizer import TokenizerOutput, as_codes

FLOW_SPACES = ("pixel", "latent")
TIME_SAMPLING = ("logit_normal", "uniform")
NUM_TRAIN_TIMESTEPS = 1000  # the scheduler's timestep scale: t = sigma * 1000


@dataclass
class FlowTiTokConfig(TiTokConfig):
    """:class:`TiTokConfig` plus the flow decoder (the ``decoder_*`` fields are unused)."""

    flow_space: str = "pixel"  # "pixel" or "latent" (AutoencoderKL latents)
    vae_path: str | None = None  # local diffusers AutoencoderKL folder (flow_space="latent")
    flow_patch_size: int = 4  # patch size of the velocity model on its input (pixels or latents)
    flow_width: int = 256
    flow_depth: int = 4
    flow_heads: int = 4
    flow_mlp_ratio: float = 4.0
    flow_weight: float = 1.0
    cfg_dropout: float = 0.1  # training: probability of the null condition (classifier-free guidance)
    time_sampling: str = "logit_normal"  # training noise levels: sigmoid(N(0, 1)) or U(0, 1)
    shift: float = 1.0  # scheduler timestep shift (> 1 spends more steps at high noise)
    # what the network outputs: "v" (the velocity) or "x" (the clean sample x0_hat, turned into
    # v = (x_sigma - x0_hat) / max(sigma, prediction_eps) for the same velocity loss and sampler)
    prediction: str = "v"
    prediction_eps: float = 0.05
    sample_steps: int = 25  # default Euler steps of decode()
    cfg_scale: float = 1.0  # default guidance scale of decode() (1 = no guidance)
    freeze_tokenizer: bool = False  # two-stage: encoder + quantizer frozen (eval mode), only the flow decoder trains
    # REPA / VFM alignment: {weight, encoder (timm name), weights (local file), layer (block index of the
    # aligned features), features: "decoder"|"encoder", encoder_layer (-1: last block), image_size}
    repa: dict[str, Any] | None = None


PREDICTIONS = ("v", "x")
REPA_KEYS = {"weight", "encoder", "weights", "layer", "features", "encoder_layer", "image_size", "proj_dim"}


def _timestep_embedding(sigma: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of ``sigma * 1000`` (diffusers' ``get_timestep_embedding``)."""
    from diffusers.models.embeddings import get_timestep_embedding

    return get_timestep_embedding(sigma.float() * NUM_TRAIN_TIMESTEPS, dim, flip_sin_to_cos=True, downscale_freq_shift=0)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNZeroBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated (shift, scale, gate) by a vector.

    The modulation is zero-initialised, so every block starts as the identity (AdaLN-zero).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"flow_width ({width}) must be a multiple of flow_heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h: (B, N, W) sequence, c: (B, W) condition vector -> (B, N, W)."""
        s1, g1, a1, s2, g2, a2 = self.ada(c).chunk(6, dim=-1)
        q, k, v = rearrange(self.qkv(_modulate(self.norm1(h), s1, g1)), "b n (s h d) -> s b h n d", s=3, h=self.heads)
        att = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        h = h + a1[:, None] * self.proj(att)
        return h + a2[:, None] * self.mlp(_modulate(self.norm2(h), s2, g2))


class FlowVelocityModel(nn.Module):
    """DiT-style velocity model: patchified ``x_sigma`` + projected condition tokens -> ``v``.

    Written here rather than from diffusers' transformer blocks: those take a timestep (and
    class label) for AdaLN-zero, not an arbitrary condition vector, and their cross-attention
    blocks cannot add the pooled token prefix to the modulation without patching them.
    """

    def __init__(self, *, in_channels: int, grid: tuple[int, int], patch_size: int, token_dim: int, num_tokens: int,
                 width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.in_channels, self.patch_size, self.width = in_channels, patch_size, width
        self.patch_in = nn.Linear(in_channels * patch_size**2, width)
        self.pos_embed = GridPosEmbed(grid, width)
        if width % 4 == 0:
            self.pos_embed.weight.data.copy_(build_sincos2d_pos_embed(list(grid), dim=width).reshape(1, -1, width))
        self.cond_in = nn.Linear(token_dim, width)
        self.cond_pos = nn.Parameter(torch.randn(num_tokens, width) * 0.02)
        self.null_cond = nn.Parameter(torch.randn(num_tokens, width) * 0.02)  # CFG: the unconditional input
        self.t_dim = 256
        self.t_mlp = nn.Sequential(nn.Linear(self.t_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.pool_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList([AdaLNZeroBlock(width, heads, mlp_ratio) for _ in range(depth)])
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.head = nn.Linear(width, in_channels * patch_size**2)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m not in (self.ada_out[1],) and not any(m is b.ada[1] for b in self.blocks):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for m in (self.ada_out[1], self.head):  # the model starts by predicting v = 0
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def condition(self, z: Tensor, drop: Tensor | None = None) -> Tensor:
        """z: (B, K, token_dim) quantized tokens (tail already masked) -> (B, K, W).
        ``drop``: (B,) bool, True where the null condition replaces the tokens."""
        c = self.cond_in(z) + self.cond_pos.to(z.dtype)
        if drop is not None:
            c = torch.where(drop[:, None, None], self.null_cond.to(c.dtype).expand_as(c), c)
        return c

    def unconditional(self, batch: int) -> Tensor:
        return self.null_cond.expand(batch, -1, -1)

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor, return_layer: int | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """x: (B, C, H, W) noisy input, sigma: (B,) in [0, 1], cond: (B, K, W) from :meth:`condition`.

        Returns (v (B, C, H, W), the patch features after block ``return_layer`` (B, N, W) or None)."""
        b, _, hh, ww = x.shape
        p = self.patch_size
        gh, gw = hh // p, ww // p
        h = self.patch_in(rearrange(x, "b c (gh p) (gw q) -> b (gh gw) (p q c)", p=p, q=p))
        h = h + self.pos_embed((gh, gw)).to(h.dtype)
        n = h.shape[1]
        c = self.t_mlp(_timestep_embedding(sigma, self.t_dim).to(h.dtype)) + self.pool_mlp(cond.mean(1))
        h = torch.cat([h, cond.to(h.dtype)], dim=1)
        feats = None
        for i, blk in enumerate(self.blocks):
            h = blk(h, c)
            if i == return_layer:
                feats = h[:, :n]
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        out = self.head(_modulate(self.norm_out(h[:, :n]), shift, scale))
        return rearrange(out, "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=gh, p=p, q=p), feats


def load_vae(path: str | Path | None) -> Any:
    """A frozen diffusers ``AutoencoderKL`` from a local folder; a clear error when it is absent."""
    if not path:
        raise ConfigError("flow_space='latent' needs vae_path: a local diffusers AutoencoderKL folder "
                          "(config.json + diffusion_pytorch_model.safetensors)")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"AutoencoderKL folder not found: {folder} (no config.json). mmtok never downloads weights at run time; "
            f"place a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors, as written by "
            f"AutoencoderKL.save_pretrained) at {folder}, or set vae_path to where it is."
        )
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True)
    return vae.eval().requires_grad_(False)


@register_family
class FlowTiTokTokenizer(TiTokTokenizer):
    """1D tokenizer with a rectified-flow decoder (see the module docstring)."""

    config_class = FlowTiTokConfig

    def __init__(self, config: FlowTiTokConfig) -> None:
        super().__init__(config)
        c = config
        del self.decoder  # the deterministic pixel decoder is replaced by the flow decoder
        if c.flow_space not in FLOW_SPACES:
            raise ValueError(f"flow_space must be one of {FLOW_SPACES}, got {c.flow_space!r}")
        if c.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {c.prediction!r}")
        if not 0 < c.prediction_eps <= 1:
            raise ValueError(f"prediction_eps must be in (0, 1], got {c.prediction_eps}")
        if c.time_sampling not in TIME_SAMPLING:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLING}, got {c.time_sampling!r}")
        if not 0.0 <= c.cfg_dropout < 1.0:
            raise ValueError(f"cfg_dropout must be in [0, 1), got {c.cfg_dropout}")
        if c.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {c.sample_steps}")
        if c.flow_weight < 0:
            raise ValueError(f"flow_weight must be >= 0, got {c.flow_weight}")
        # frozen helpers live in a plain dict: not parameters, not saved, not averaged by EMA
        self._frozen: dict[str, Any] = {}
        channels, factor = c.in_channels, 1
        if c.flow_space == "latent":
            vae = load_vae(c.vae_path)
            self._frozen["vae"] = vae
            channels = int(vae.config.latent_channels)
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_factor = factor
        step = factor * c.flow_patch_size
        if c.image_size % step:
            raise ValueError(f"image_size ({c.image_size}) must be a multiple of the flow decoder's step "
                             f"({factor} latent factor x flow_patch_size {c.flow_patch_size} = {step})")
        g = c.image_size // step
        self.flow = FlowVelocityModel(in_channels=channels, grid=(g, g), patch_size=c.flow_patch_size,
                                      token_dim=self.token_dim, num_tokens=c.num_tokens, width=c.flow_width,
                                      depth=c.flow_depth, heads=c.flow_heads, mlp_ratio=c.flow_mlp_ratio)
        self.repa_head: nn.Module | None = None
        self.repa_spec: dict[str, Any] | None = None
        if c.repa is not None:
            self._init_repa(dict(c.repa))
        if c.freeze_tokenizer:
            for m in self._tokenizer_modules():
                m.requires_grad_(False)

    # --- parts ----------------------------------------------------------------------------
    def _tokenizer_modules(self) -> list[nn.Module]:
        return [m for m in (self.encoder, self.quantizer, self.nested) if m is not None]

    def _init_repa(self, spec: dict[str, Any]) -> None:
        unknown = sorted(set(spec) - REPA_KEYS)
        if unknown:
            raise ConfigError(f"repa: unknown key(s) {unknown}; known: {sorted(REPA_KEYS)}")
        for k in ("weight", "encoder", "weights"):
            if k not in spec:
                raise ConfigError(f"repa needs {k!r} (weight, encoder: a timm model name, weights: a local file)")
        spec.setdefault("features", "decoder")
        spec.setdefault("encoder_layer", -1)
        if spec["features"] not in ("decoder", "encoder"):
            raise ConfigError(f"repa.features must be 'decoder' or 'encoder', got {spec['features']!r}")
        depth = self.config.flow_depth if spec["features"] == "decoder" else self.config.encoder_depth
        spec.setdefault("layer", max(0, depth // 2 - 1))
        if not 0 <= int(spec["layer"]) < depth:
            raise ConfigError(f"repa.layer must be a block index in [0, {depth}) of the {spec['features']}, got {spec['layer']}")
        from mmtok.losses.repa import encoder_feature_dim

        width = self.config.flow_width if spec["features"] == "decoder" else self.config.encoder_width
        dim = encoder_feature_dim(spec["encoder"], spec.get("image_size"))
        hidden = int(spec.get("proj_dim", 2 * width))
        self.repa_head = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, dim))
        self.repa_spec = spec

    def repa_loss_module(self) -> Any:
        """The frozen REPA target network (built on first use from ``repa.weights``)."""
        if self.repa_spec is None:
            raise RuntimeError("this tokenizer has no repa config")
        if "repa" not in self._frozen:
            from mmtok.losses.repa import REPALoss

            s = self.repa_spec
            self._frozen["repa"] = REPALoss(s["encoder"], s["weights"], layer=int(s["encoder_layer"]),
                                            image_size=s.get("image_size"))
        return self._frozen["repa"]

    def _vae(self, device: torch.device) -> Any:
        vae = self._frozen["vae"]
        if next(vae.parameters()).device != device:
            vae.to(device)
        return vae

    def train(self, mode: bool = True) -> "FlowTiTokTokenizer":
        super().train(mode)
        if self.config.freeze_tokenizer:  # frozen stage: no running statistics / codebook updates either
            for m in self._tokenizer_modules():
                m.eval()
        return self

    @property
    def last_layer_weight(self) -> Tensor:
        return self.flow.head.weight

    @property
    def flow_grid_step(self) -> int:
        """Pixels per velocity-model patch (latent factor x flow patch size)."""
        return self.latent_factor * self.config.flow_patch_size

    # --- flow space ---------------------------------------------------------------------
    def to_flow_space(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> what the flow runs on (the image, or scaled VAE latents)."""
        if self.config.flow_space == "pixel":
            return x
        vae = self._vae(x.device)
        with torch.no_grad():
            z = vae.encode(x.float()).latent_dist.mode()
        shift = vae.config.shift_factor or 0.0
        return (z - shift) * vae.config.scaling_factor

    def from_flow_space(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`to_flow_space` (pixels, not clamped)."""
        if self.config.flow_space == "pixel":
            return z
        vae = self._vae(z.device)
        shift = vae.config.shift_factor or 0.0
        return vae.decode(z.float() / vae.config.scaling_factor + shift).sample

    def _sigmas(self, b: int, device: torch.device) -> Tensor:
        if self.config.time_sampling == "uniform":
            s = torch.rand(b, device=device)
        else:
            s = torch.sigmoid(torch.randn(b, device=device))
        shift = self.config.shift
        return shift * s / (1 + (shift - 1) * s)

    # --- training ---------------------------------------------------------------------
    def forward(self, x: Tensor, keep: Tensor | int | None = None) -> TokenizerOutput:
        """Training pass: flow-matching loss for the tokens of ``x`` (nested prefixes in training)."""
        grid = self._grid(x)
        c = self.config
        frozen = c.freeze_tokenizer
        with torch.no_grad() if frozen else torch.enable_grad():
            latents = self.encoder(x, grid)
            q = self.quantizer(latents)
        zq = q.quantized
        metrics = dict(q.metrics)
        zq = self._nested_prefix(zq, keep, metrics)
        b = x.shape[0]
        target = self.to_flow_space(x)
        noise = torch.randn_like(target)
        sigma = self._sigmas(b, x.device)
        s = sigma.view(b, 1, 1, 1).to(target.dtype)
        x_t = s * noise + (1 - s) * target
        drop = torch.rand(b, device=x.device) < c.cfg_dropout if self.training and c.cfg_dropout > 0 else None
        cond = self.flow.condition(zq, drop)
        repa_layer = None
        if self.repa_spec is not None and self.repa_spec["features"] == "decoder":
            repa_layer = int(self.repa_spec["layer"])
        v, feats = self.velocity(x_t, sigma, cond, return_layer=repa_layer)
        flow = (v.float() - (noise - target).float()).pow(2).mean()
        loss = (q.loss.detach() if frozen else q.loss) + c.flow_weight * flow
        metrics["loss/flow"] = flow.detach()
        if self.repa_spec is not None:
            if self.repa_spec["features"] == "encoder":
                feats = self._encoder_block_features(x, grid, int(self.repa_spec["layer"]))
            repa = self.repa_loss_module()(self.repa_head(feats), x)
            loss = loss + float(self.repa_spec["weight"]) * repa
            metrics["loss/repa"] = repa.detach()
        x0 = x_t - s * v  # the one-step estimate of the clean sample
        recon = x0 if c.flow_space == "pixel" else self._decode_no_grad(x0)
        return TokenizerOutput(recon=recon, codes=q.codes, loss=loss, metrics=metrics)

    def velocity(self, x_t: Tensor, sigma: Tensor, cond: Tensor, return_layer: int | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        """The velocity at ``x_t`` (and the features of ``return_layer``): the network's output
        (``prediction="v"``), or ``(x_t - x0_hat) / max(sigma, eps)`` from its clean-sample
        estimate (``"x"``: the network only has to draw the image, not carry the noise through;
        at init, zero output, the one-step sample is 0 instead of the noise itself)."""
        out, feats = self.flow(x_t, sigma, cond, return_layer=return_layer)
        if self.config.prediction == "v":
            return out, feats
        s = sigma.clamp_min(self.config.prediction_eps).view(-1, *([1] * (x_t.ndim - 1))).to(out.dtype)
        return (x_t - out) / s, feats

    def _decode_no_grad(self, z: Tensor) -> Tensor:
        with torch.no_grad():
            return self.from_flow_space(z)

    def _encoder_block_features(self, x: Tensor, grid: tuple[int, int], layer: int) -> Tensor:
        """Patch features of the tokenizer encoder after block ``layer`` (B, N, encoder_width)."""
        grabbed: list[Tensor] = []
        handle = self.encoder.transformer.blocks[layer].register_forward_hook(lambda m, i, o: grabbed.append(o))
        try:
            self.encoder(x, grid)
        finally:
            handle.remove()
        start = 1 if self.encoder.cls_token is not None else 0
        return grabbed[0][:, start:start + grid[0] * grid[1]]

    # --- inference --------------------------------------------------------------------
    def decode(self, codes: Tensor, image_size: int | tuple[int, int] | None = None, *, steps: int | None = None,
               cfg_scale: float | None = None, seed: int = 0) -> Tensor:
        """codes: (B, k) prefix, 1 <= k <= K -> (B, 3, H, W) in [-1, 1], sampled with ``steps``
        Euler steps (default ``sample_steps``) and guidance ``cfg_scale`` (default ``cfg_scale``;
        1 = none). The initial noise comes from a CPU generator seeded with ``seed``: the same
        seed gives the same images on any device, batch by batch."""
        codes = as_codes(codes, self.device)
        if codes.ndim not in (2, 3) or not 1 <= codes.shape[1] <= self.num_tokens:
            raise ValueError(f"codes must be (B, k) with 1 <= k <= {self.num_tokens}, got shape {tuple(codes.shape)}")
        steps = self.config.sample_steps if steps is None else int(steps)
        scale = self.config.cfg_scale if cfg_scale is None else float(cfg_scale)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        z = self.quantizer.decode(codes)
        if z.shape[1] < self.num_tokens:
            if self.nested is not None:
                z = self.nested.pad(z)
            else:
                z = torch.cat([z, z.new_zeros(z.shape[0], self.num_tokens - z.shape[1], z.shape[2])], dim=1)
        h, w = parse_image_size(self.config.image_size if image_size is None else image_size, self.flow_grid_step)
        with torch.no_grad():
            cond = self.flow.condition(z.to(self.flow.cond_in.weight.dtype))
            sample = self.sample(cond, (h // self.latent_factor, w // self.latent_factor), steps, scale, seed)
            return self.from_flow_space(sample).clamp(-1, 1)

    @torch.no_grad()
    def sample(self, cond: Tensor, size: tuple[int, int], steps: int, cfg_scale: float = 1.0, seed: int = 0) -> Tensor:
        """Integrate the flow from noise (sigma = 1) to data with Euler steps -> (B, C, h, w) in flow space."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        b, device = cond.shape[0], cond.device
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        x = torch.randn(b, self.flow.in_channels, *size, generator=g).to(device)
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=self.config.shift)
        sched.set_timesteps(steps, device=device)
        guided = cfg_scale != 1.0
        both = torch.cat([cond, self.flow.unconditional(b).to(cond.dtype)]) if guided else cond
        for t in sched.timesteps:
            sigma = (t / NUM_TRAIN_TIMESTEPS).float().expand(both.shape[0])
            inp = torch.cat([x, x]) if guided else x
            v, _ = self.velocity(inp.to(cond.dtype), sigma, both)
            if guided:
                vc, vu = v.float().chunk(2)
                v = vu + cfg_scale * (vc - vu)
            x = sched.step(v.float(), t, x).prev_sample
        return x

    def decode_latents(self, z: Tensor, image_size: Any = None) -> Tensor:  # pragma: no cover - not this family's API
        raise NotImplementedError(f"{type(self).__name__} decodes by sampling: use decode(codes, steps=..., seed=...)")


# --- registered variants ---------------------------------------------------------------------

# velocity-model size per tokenizer size; "t" runs on CPU (32x32 pixels, patch 4)
FLOW_SIZES: dict[str, dict[str, Any]] = {
    "t": dict(flow_width=128, flow_depth=4, flow_heads=4, flow_patch_size=4),
    "s": dict(flow_width=512, flow_depth=8, flow_heads=8, flow_patch_size=16),
    "b": dict(flow_width=768, flow_depth=12, flow_heads=12, flow_patch_size=16),
    "l": dict(flow_width=1024, flow_depth=24, flow_heads=16, flow_patch_size=16),
}


def _register_flow(name: str, size: str, num_tokens: int, quant: str) -> None:
    defaults = {**variant_defaults(size, num_tokens, quant, flextok=True), **FLOW_SIZES[size]}

    def variant(**overrides: Any) -> FlowTiTokTokenizer:
        return FlowTiTokTokenizer(build_config(FlowTiTokConfig, defaults, overrides))

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = (f"ordered 1D tokenizer with a rectified-flow decoder, size {size!r}, {num_tokens} tokens, "
                       f"{quant.upper()} ({SIZES[size]['image_size']}px); keyword overrides patch FlowTiTokConfig.")
    register_tokenizer(variant)


for _name, _entry in FLEXTOK_VARIANTS.items():
    _register_flow(f"{_name}_flow", **_entry)
del _name, _entry

__all__ = ["FlowTiTokConfig", "FlowTiTokTokenizer", "FlowVelocityModel", "AdaLNZeroBlock", "load_vae"]
