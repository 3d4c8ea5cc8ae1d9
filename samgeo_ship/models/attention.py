"""SAM's encoder attention computed a block of queries at a time: the same arithmetic as segment_anything's
``Attention`` (bit for bit on a CPU), without its whole attention matrix.

A global-attention block of vit_b attends 4096 cells to 4096 cells in 12 heads: segment_anything builds that
201-million-entry matrix, adds the decomposed relative positions to it in two passes and softmaxes it, each pass
through main memory. Here the queries go through in blocks of about ``CHUNK_ENTRIES`` attention entries, so each
block's scores, positions and softmax stay in the processor's cache (speed-ups: benchmarks/README.md, "vit_b on a
CPU"). Keys, weights and state_dict are unchanged: checkpoints load as before."""

from __future__ import annotations

import torch
from segment_anything.modeling import image_encoder

# Entries of one query block's attention matrix (all heads): 6 Mi, 12 MB in bf16: small enough to stay in cache,
# large enough that the per-block overhead stays small (the sizes compared: benchmarks/README.md).
CHUNK_ENTRIES = 6 * 2**20


class ChunkedAttention(image_encoder.Attention):
    """segment_anything's multi-head attention with decomposed relative positions, by blocks of queries on a CPU
    (on a GPU, segment_anything's own forward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # a GPU would pay a kernel launch per block; its memory bandwidth needs no blocks
            return super().forward(x)
        batch, h, w, _ = x.shape
        heads, cells = self.num_heads, h * w
        qkv = self.qkv(x).reshape(batch, cells, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * heads, cells, -1).unbind(0)
        if self.use_rel_pos:  # the two terms of add_decomposed_rel_pos, broadcast over key columns and key rows
            grid_q = q.reshape(batch * heads, h, w, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, image_encoder.get_rel_pos(h, h, self.rel_pos_h))
            rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, image_encoder.get_rel_pos(w, w, self.rel_pos_w))
            rel_h = rel_h.reshape(batch * heads, cells, h, 1)
            rel_w = rel_w.reshape(batch * heads, cells, 1, w)
        keys_t = k.transpose(-2, -1).contiguous()  # once, not a copy inside every block's product
        step = max(1, CHUNK_ENTRIES // (batch * heads * cells))
        blocks = []
        for start in range(0, cells, step):
            rows = slice(start, start + step)
            attn = (q[:, rows] * self.scale) @ keys_t
            if self.use_rel_pos:  # in place: the product's own output, which its backward does not need
                grid = attn.view(batch * heads, -1, h, w)
                grid += rel_h[:, rows]
                grid += rel_w[:, rows]
            blocks.append(attn.softmax(dim=-1) @ v)
        out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        out = out.view(batch, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(batch, h, w, -1)
        return self.proj(out)


def chunk_attention(encoder: torch.nn.Module) -> torch.nn.Module:
    """Make every attention layer of a SAM image encoder a :class:`ChunkedAttention` (in place; returns it)."""
    for module in encoder.modules():
        if type(module) is image_encoder.Attention:
            module.__class__ = ChunkedAttention
    return encoder
