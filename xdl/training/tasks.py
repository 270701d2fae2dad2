"""One task per kind of training: the model, its optimisers and what one training/validation step does.

As torchgeo's trainers: :class:`BaseTask` holds the module, device and precision and does the
optimiser step; :class:`GapFillTask`, :class:`PairedTask` and :class:`Pix2PixTask` compute the losses.
"""

from __future__ import annotations

import contextlib

import torch

from .losses import discriminator_loss, gap_loss, gaussian_nll, generator_gan_loss, masked_l1


class BaseTask:
    """A module being trained: ``training_step(batch)`` steps the optimiser(s), ``validation_step`` only scores.

    ``train_keys``/``val_keys`` name the loss terms recorded per epoch ("loss" first).
    """

    mode = "paired"           # the data a batch holds: "gap" (x, valid, kept) or "paired" (also y)
    card_mode = "paired"      # the card's training.mode
    default_lr = 1e-3
    betas = (0.9, 0.999)
    train_keys = ("loss",)
    val_keys = ("loss",)

    def __init__(self, module, device, autocast_dtype=None, takes_mask=False, weights=None, lr=None):
        self.module, self.device, self.autocast_dtype = module, device, autocast_dtype
        self.takes_mask = takes_mask
        self.weights = dict(weights or {})
        self.lr = float(lr) if lr is not None else self.default_lr
        module.to(device).train()
        self.optimizers = self.configure_optimizers()
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=autocast_dtype == torch.float16 and device.type == "cuda")

    def configure_optimizers(self) -> list:
        return [torch.optim.Adam([p for p in self.module.parameters() if p.requires_grad],
                                 lr=self.lr, betas=self.betas)]

    def new_history(self) -> dict:
        """Empty per-epoch history: train/val loss, then the other validation and training terms."""
        history = {"train_loss": [], "val_loss": []}
        history.update({f"val_{k}": [] for k in self.val_keys[1:]})
        history.update({k: [] for k in self.train_keys[1:]})
        return history

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def call(self, net, x, m):
        return net(x, m.to(x.dtype)) if self.takes_mask else net(x)

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def backward(self, loss, opt) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def training_step(self, batch: dict) -> dict:
        terms = self.validation_step(batch)
        self.backward(terms["loss"], self.optimizers[0])
        return terms

    def validation_step(self, batch: dict) -> dict:
        raise NotImplementedError


class GapFillTask(BaseTask):
    """Self-supervised gap filling: hide ``kept == False`` pixels, score their restoration (:func:`gap_loss`).

    A module with ``sigma`` True returns the means then the sigmas: the means get :func:`gap_loss`,
    the sigmas the Gaussian NLL on the hidden pixels with the means detached (so only the L1 terms
    train the means), weighted ``weights["nll"]``, beta-NLL with ``weights["nll_beta"]``. A module with ``takes_context`` is called
    ``module(x, mask, info)``: the first channels of a batch are the targets, the rest context.
    """

    mode = "gap"
    card_mode = "gap_filling"
    val_keys = ("loss", "valid", "hole", "tv")

    def __init__(self, module, device, autocast_dtype=None, takes_mask=False, weights=None, lr=None, info=None):
        super().__init__(module, device, autocast_dtype, takes_mask, weights, lr)
        self.sigma = bool(getattr(module, "sigma", False))
        self.takes_context = bool(getattr(module, "takes_context", False))
        self.info = None if info is None else torch.as_tensor(info, dtype=torch.float32).to(device)
        if self.sigma:
            self.val_keys = (*type(self).val_keys, "nll")
        # Hidden target pixels with a known value the training steps scored (a tensor: no sync a
        # step); 0 at the end means the model learned nothing to fill (see xdl.fit).
        self.hidden_trained = torch.zeros((), dtype=torch.int64, device=device)
        self.steps_trained = 0
        self._hidden = None

    def training_step(self, batch: dict) -> dict:
        terms = super().training_step(batch)
        self.hidden_trained += self._hidden
        self.steps_trained += 1
        return terms

    def predict(self, b: dict):
        """``(seen, means, sigmas or None)`` of the module on batch ``b``: ``seen`` what it saw of the targets."""
        mask = b["valid"] & b["kept"]
        x = torch.where(mask, b["x"], 0.0)
        with self.autocast():
            if self.takes_context:
                out = self.module(x, mask.to(x.dtype), self.info)
            else:
                out = self.call(self.module, x, mask)
        out = out.float()
        n = out.shape[1] // 2 if self.sigma else out.shape[1]
        return mask[:, :n], out[:, :n], (out[:, n:] if self.sigma else None)

    def validation_step(self, b: dict) -> dict:
        seen, mean, sigma = self.predict(b)
        n = mean.shape[1]
        truth, valid = b["x"][:, :n], b["valid"][:, :n]
        terms = gap_loss(mean, truth, valid, seen, self.weights)
        hidden = valid & ~seen
        self._hidden = torch.count_nonzero(hidden)
        if sigma is not None:
            terms["nll"] = gaussian_nll(mean.detach(), sigma, truth, hidden, self.weights.get("nll_beta", 0.0))
            terms["loss"] = terms["loss"] + self.weights["nll"] * terms["nll"]
        return terms


class PairedTask(BaseTask):
    """A mapping from inputs to targets, masked L1 over the valid target pixels."""

    def validation_step(self, b: dict) -> dict:
        with self.autocast():
            out = self.call(self.module, b["x"], b["valid"])
        l1 = masked_l1(out.float(), b["y"], b["y_valid"])
        return {"loss": l1, "l1": l1}


class Pix2PixTask(BaseTask):
    """pix2pix (Isola et al. 2017): the generator's masked L1 plus a PatchGAN adversarial term."""

    card_mode = "pix2pix"
    default_lr = 2e-4
    betas = (0.5, 0.999)
    train_keys = ("loss", "d_loss", "g_gan", "g_l1")

    def configure_optimizers(self) -> list:
        gen, disc = self.module.generator, self.module.discriminator
        return [torch.optim.Adam(gen.parameters(), lr=self.lr, betas=self.betas),
                torch.optim.Adam(disc.parameters(), lr=self.lr, betas=self.betas)]

    def _fake(self, b):
        with self.autocast():
            fake = self.call(self.module.generator, b["x"], b["valid"])
        fake = fake.float()
        return fake, masked_l1(fake, b["y"], b["y_valid"])

    def validation_step(self, b: dict) -> dict:
        _, l1 = self._fake(b)
        return {"loss": l1, "l1": l1}

    def training_step(self, b: dict) -> dict:
        disc = self.module.discriminator
        fake, l1 = self._fake(b)
        # Invalid target pixels are 0 in the real pair; zero them in the fake pair too so they give nothing away.
        fake_m = torch.where(b["y_valid"], fake, 0.0)
        real_pair, fake_pair = torch.cat([b["x"], b["y"]], 1), torch.cat([b["x"], fake_m], 1)
        disc.requires_grad_(True)
        with self.autocast():
            d_real, d_fake = disc(real_pair).float(), disc(fake_pair.detach()).float()
        d_loss = discriminator_loss(d_real, d_fake)
        self.backward(d_loss, self.optimizers[1])
        disc.requires_grad_(False)  # the generator step must not accumulate discriminator gradients
        with self.autocast():
            d_fake_g = disc(fake_pair).float()
        g_gan = generator_gan_loss(d_fake_g)
        g_loss = self.weights["gan"] * g_gan + self.weights["l1"] * l1
        self.backward(g_loss, self.optimizers[0])
        disc.requires_grad_(True)
        return {"loss": g_loss, "d_loss": d_loss, "g_gan": g_gan, "g_l1": l1}


def make_task(mode: str, gan: bool, module, device, autocast_dtype, takes_mask, weights, lr, info=None) -> BaseTask:
    """The task for a mode ("gap" or "paired") and model kind (pix2pix is ``gan``); ``info``: a context model's."""
    if mode == "gap":
        return GapFillTask(module, device, autocast_dtype, takes_mask, weights, lr, info)
    cls = Pix2PixTask if gan else PairedTask
    return cls(module, device, autocast_dtype, takes_mask, weights, lr)
