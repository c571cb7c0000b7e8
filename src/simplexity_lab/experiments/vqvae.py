r"""``vqvae``: a VQ-VAE and a class-conditional PixelCNN prior over its codes (ev-softmax paper).

When the task is built (seeded, deterministic, so a resumed run rebuilds the same ones) it trains
a :class:`~simplexity_lab.models.vqvae.VQVAE` (7×7 codes, K = ``num_codes``) and a CNN classifier on
the real training images, and encodes the training split. The training steps then fit a
:class:`~simplexity_lab.models.pixelcnn.GatedPixelCNN` prior over the codes given the class, with the
normalizer's loss. ``test/*``: ``samples_per_class`` code grids per class are sampled with the
exact normalizer, decoded, and classified by the separately trained classifier: ``accuracy_top1``,
``accuracy_topk`` (class among the classifier's top ``top_k``) and ``nonzero`` (mean number of
nonzero codebook probabilities per sampling step; K for softmax). ``valid/*``: the prior's
loss and ``nonzero`` on a few samples. MNIST and Fashion-MNIST stand in for tinyImageNet.

Usage::

    simplexity run vqvae --budget smoke --set normalizer=ev_softmax
    simplexity run vqvae --budget paper --set dataset=fashion_mnist --set normalizer=N --set seed=S

References:
    Chen, Tsang, Itkina and Kochenderfer, *Evidential Softmax for Sparse Multimodal Distributions
    in Deep Generative Models*, NeurIPS 2021. van den Oord, Vinyals and Kavukcuoglu, *Neural
    Discrete Representation Learning*, NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity_lab.experiments._data import eval_subset, load_split
from simplexity_lab.models.pixelcnn import GatedPixelCNN
from simplexity_lab.models.vqvae import VQVAE

__all__ = [
    "VQVAEConfig",
    "VQVAETask",
]


@dataclass(frozen=True)
class VQVAEConfig(TrainConfig):
    """Config of the ``vqvae`` experiment (fields of :class:`TrainConfig` plus these).

    Attributes:
        dataset: ``mnist`` or ``fashion_mnist`` (28×28, 10 classes).
        normalizer: a name in ``simplexity.normalizers.names()``.
        num_codes, code_dim, vq_hidden: VQ-VAE codebook size, code dimension, channels.
        vqvae_steps, classifier_steps: Adam steps (batch 128) of the VQ-VAE and the classifier.
        prior_hidden, prior_layers, prior_kernel: PixelCNN channels, gated layers and kernel width
            (paper: 128, 10, 7 on 16×16 codes; 32, 6, 3 here on 7×7 codes, to fit on a CPU).
        samples_per_class: class-conditional samples per class at test.
        top_k: k of the top-k accuracy.
    """

    steps: int = 9375  # 12 epochs of the 50,000-image training split, 64 code grids a batch
    batch_size: int = 64
    lr: str = "1e-3"
    val_every: int = 1000
    checkpoint_every: int = 1000
    eval_size: int | None = 2000
    dataset: str = "mnist"
    normalizer: str = "ev_softmax"
    num_codes: int = 64
    code_dim: int = 16
    vq_hidden: int = 32
    vqvae_steps: int = 1500
    classifier_steps: int = 1000
    prior_hidden: int = 32
    prior_layers: int = 6
    prior_kernel: int = 3
    samples_per_class: int = 50
    top_k: int = 3

    minimums: ClassVar[Mapping[str, int]] = dict.fromkeys(
        ("num_codes", "code_dim", "vq_hidden", "prior_hidden", "prior_layers",
         "samples_per_class", "top_k"), 1
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        from simplexity import normalizers

        normalizers.check_name(self.normalizer)
        if self.dataset not in ("mnist", "fashion_mnist"):
            raise ValueError(f"dataset must be 'mnist' or 'fashion_mnist', got {self.dataset!r}")
        if self.prior_kernel < 3 or self.prior_kernel % 2 == 0:
            raise ValueError(f"prior_kernel must be odd and >= 3, got {self.prior_kernel}")
        if self.num_codes < 2:
            raise ValueError(f"num_codes must be >= 2, got {self.num_codes}")
        for name in ("vqvae_steps", "classifier_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _classifier() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def _images(x: Tensor) -> Tensor:
    return x.reshape(len(x), 1, 28, 28)


class VQVAETask(Task):
    """Trains a class-conditional PixelCNN prior over the codes of a pre-trained VQ-VAE."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: VQVAEConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        kw = {"data_dir": data_dir, "seed": config.seed, "binarize": "none"}
        train = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        x, y = _images(train.data), train.labels
        self.vqvae = VQVAE(config.num_codes, config.code_dim, config.vq_hidden)
        self.classifier = _classifier()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(config.seed, 9))
            self._fit(self.vqvae, lambda i: self.vqvae.loss(x[i])[0], len(x), config.vqvae_steps)
            self._fit(
                self.classifier,
                lambda i: nn.functional.cross_entropy(self.classifier(x[i]), y[i]),
                len(x),
                config.classifier_steps,
            )
        self.vqvae.requires_grad_(False)  # no dropout or batch norm: the mode does not matter
        self.classifier.requires_grad_(False)
        self.train_codes, self.train_labels = self._encode(x), y
        test = self.splits["test"]
        with torch.no_grad():
            self.classifier_accuracy = float(
                (self.classifier(_images(test.data)).argmax(-1) == test.labels).float().mean()
            )
        self.model = GatedPixelCNN(
            config.num_codes,
            num_classes=10,
            hidden=config.prior_hidden,
            layers=config.prior_layers,
            kernel=config.prior_kernel,
            normalizer=config.normalizer,
        )

    @staticmethod
    def _fit(module: nn.Module, loss_fn: Any, num: int, steps: int) -> None:
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        for _ in range(steps):
            loss = loss_fn(torch.randint(num, (128,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def _encode(self, images: Tensor) -> Tensor:
        return torch.cat([self.vqvae.encode(chunk) for chunk in images.split(2000)])

    def train_batches(self) -> StepBatches:
        return StepBatches(self.train_codes, self.train_labels, seed=self.config.seed)

    def training_loss(self, batch, step):
        codes, labels = batch
        loss = self.model.loss(codes, labels)
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def sample(self, per_class: int, salt: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(images (10 n, 1, 28, 28), labels, nonzero)`` sampled with a seeded generator."""
        self.model.eval()
        labels = torch.arange(10).repeat_interleave(per_class)
        generator = torch.Generator().manual_seed(derived_seed(self.config.seed, 10, salt))
        codes, nonzero = self.model.sample(labels, (7, 7), generator=generator)
        return self.vqvae.decode_codes(codes), labels, nonzero

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        s = self.splits[split]
        index = eval_subset(len(s.data), self.config.eval_size)
        self.model.eval()
        loss = self.model.loss(self._encode(_images(s.data[index])), s.labels[index])
        per_class = self.config.samples_per_class if split == "test" else 2
        images, labels, nonzero = self.sample(per_class, salt=int(split == "test"))
        out = {f"{split}/loss": float(loss), f"{split}/nonzero": float(nonzero)}
        if split == "test":
            logits = self.classifier(images)
            topk = logits.topk(min(self.config.top_k, 10), -1).indices
            out["test/accuracy_top1"] = float((logits.argmax(-1) == labels).float().mean())
            out["test/accuracy_topk"] = float((topk == labels[:, None]).any(-1).float().mean())
        return out

    def figures(self, history):
        from simplexity_lab import plots

        images, _, _ = self.sample(8, salt=2)
        rows = images.reshape(10, 8, 28, 28)
        return {
            "samples": plots.image_rows(
                [rows[c] for c in range(10)],
                [f"class {c}" for c in range(10)],
            )
        }

    def summary(self) -> dict[str, Any]:
        return {"classifier_test_accuracy": self.classifier_accuracy}


EXPERIMENT = register(
    Experiment(
        name="vqvae",
        description="VQ-VAE + class-conditional gated PixelCNN prior per normalizer; --set normalizer=",
        config_class=VQVAEConfig,
        task_class=VQVAETask,
        budgets={
            "smoke": TrainConfig.smoke(
                6,
                eval_size=200,
                num_codes=16,
                code_dim=4,
                vq_hidden=8,
                vqvae_steps=5,
                classifier_steps=5,
                prior_hidden=8,
                prior_layers=2,
                samples_per_class=2,
            ),
            # every normalizer alike when 12 prior epochs do not fit: 3,000 steps (3.84 epochs of 50,000 images)
            "short": {"steps": 3000, "val_every": 1000},
            "paper": {},
        },
        paper_command=(
            "simplexity run vqvae --budget paper --set dataset=DATASET --set normalizer=N --set seed=S"
        ),
    )
)
