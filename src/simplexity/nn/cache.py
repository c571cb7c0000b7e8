"""A key/value cache: the projected keys and values of earlier steps, for step-by-step decoding.

Pass the same :class:`KeyValueCache` to :class:`~simplexity.nn.MultiheadAttention` at every step: the new
keys and values are projected, appended, and the queries attend to everything cached. Decoding one
position at a time gives the outputs of the full causal pass (``is_causal=True``), for every normalizer,
because masked keys are handed to the normalizer rather than filled before its statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simplexity._checks import check_floating, check_tensor

__all__ = ["KeyValueCache"]


class KeyValueCache:
    """Projected keys and values of earlier steps, per head, and their key padding mask.

    With ``static=True`` (cross-attention over a fixed memory) the first call fills the cache and later
    calls reuse it; their ``key`` and ``value`` may then be None.

    Attributes:
        key: (B, H, S, E / H), or None before the first call.
        value: (B, H, S, Ev / H), or None.
        key_padding_mask: (B, S) boolean, **True at padding** (``nn.MultiheadAttention``'s polarity), or
            None when no cached key is padding.
        key_sum: (B, H, 1, E / H), the running sum of the cached keys that are not padding, and
            ``key_count`` (B, 1, 1, 1) their number: :meth:`key_mean` gives ev-softmax's threshold
            (linear in the mean key) without a pass over the cache.
        static: whether the cache is filled once and then reused.

    Example:
        >>> cache = KeyValueCache()
        >>> cache.append(torch.zeros(2, 4, 3, 8), torch.zeros(2, 4, 3, 8))
        >>> cache.append(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8),
        ...              key_padding_mask=torch.tensor([[False], [True]]))
        >>> len(cache), cache.key_padding_mask.tolist()
        (4, [[False, False, False, False], [False, False, False, True]])
    """

    def __init__(self, static: bool = False) -> None:
        if not isinstance(static, bool):
            raise TypeError(f"static must be a bool, got {type(static).__name__}")
        self.static = static
        self.key: Tensor | None = None
        self.value: Tensor | None = None
        self.key_padding_mask: Tensor | None = None
        self.key_sum: Tensor | None = None
        self.key_count: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def __repr__(self) -> str:
        return f"KeyValueCache(length={len(self)}, static={self.static})"

    def append(self, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> None:
        """Append (B, H, S_new, ·) keys and values and their (B, S_new) padding mask (None = no padding)."""
        check_floating("key", key)
        check_floating("value", value)
        if key.dim() != 4 or value.dim() != 4 or key.shape[:3] != value.shape[:3]:
            raise ValueError(
                "key and value must have shapes (B, H, S_new, E / H) and (B, H, S_new, Ev / H), "
                f"got {tuple(key.shape)} and {tuple(value.shape)}"
            )
        if key_padding_mask is not None:
            check_tensor("key_padding_mask", key_padding_mask)
            if key_padding_mask.dtype != torch.bool:
                raise TypeError(
                    f"key_padding_mask must be boolean (True = padding), got {key_padding_mask.dtype}"
                )
            if key_padding_mask.shape != (key.shape[0], key.shape[2]):
                raise ValueError(
                    f"key_padding_mask must have shape (B, S_new) = {(key.shape[0], key.shape[2])}, "
                    f"got {tuple(key_padding_mask.shape)}"
                )
        weight = None if key_padding_mask is None else (~key_padding_mask)[:, None, :, None]
        added = (key if weight is None else key * weight).sum(2, keepdim=True)
        count = (
            key.new_full((key.shape[0], 1, 1, 1), key.shape[2])
            if weight is None
            else weight.sum(2, keepdim=True).to(key.dtype)
        )
        if self.key is None or self.value is None:
            self.key, self.value, self.key_padding_mask = key, value, key_padding_mask
            self.key_sum, self.key_count = added, count
            return
        if self.static:
            raise ValueError("a static cache is filled once; create a new one for a new memory")
        if (key.shape[:2], key.shape[3]) != (self.key.shape[:2], self.key.shape[3]) or (
            value.shape[3] != self.value.shape[3]
        ):
            raise ValueError(
                f"new keys {tuple(key.shape)} and values {tuple(value.shape)} do not match the cached "
                f"{tuple(self.key.shape)} and {tuple(self.value.shape)} in (B, H, ·, features)"
            )
        if key_padding_mask is not None or self.key_padding_mask is not None:
            batch, old, new = key.shape[0], self.key.shape[2], key.shape[2]
            before = self.key_padding_mask
            if before is None:
                before = torch.zeros(batch, old, dtype=torch.bool, device=key.device)
            after = key_padding_mask
            if after is None:
                after = torch.zeros(batch, new, dtype=torch.bool, device=key.device)
            self.key_padding_mask = torch.cat([before, after], -1)
        self.key = torch.cat([self.key, key], -2)
        self.value = torch.cat([self.value, value], -2)
        assert self.key_sum is not None and self.key_count is not None
        self.key_sum = self.key_sum + added
        self.key_count = self.key_count + count

    def key_mean(self) -> Tensor | None:
        """Mean of the cached keys that are not padding, (B, H, 1, E / H); None before the first call.

        Example:
            >>> cache = KeyValueCache()
            >>> cache.append(torch.tensor([[[[1.0], [3.0], [8.0]]]]), torch.zeros(1, 1, 3, 1),
            ...              key_padding_mask=torch.tensor([[False, False, True]]))
            >>> cache.key_mean()
            tensor([[[[2.]]]])
        """
        if self.key_sum is None or self.key_count is None:
            return None
        return self.key_sum / self.key_count.clamp_min(1)

    def reorder(self, index: Tensor) -> None:
        """Select batch entries (e.g. surviving beams): ``index`` is a (B',) long tensor."""
        check_tensor("index", index)
        if self.key is None or self.value is None:
            return
        self.key = self.key.index_select(0, index)
        self.value = self.value.index_select(0, index)
        if self.key_padding_mask is not None:
            self.key_padding_mask = self.key_padding_mask.index_select(0, index)
        if self.key_sum is not None and self.key_count is not None:
            self.key_sum = self.key_sum.index_select(0, index)
            self.key_count = self.key_count.index_select(0, index)
