"""Memory-bounded contrastive gradients (GradCache, Gao et al. 2021) for very large global batches.

The InfoNCE loss couples every pair of the global batch, but its gradient w.r.t. the parameters
factorises through the embeddings: dL/dθ = Σ_i (dL/de_i) · (de_i/dθ). So:
  1. embed the batch chunk by chunk without keeping activations (lax.map, forward only);
  2. take the loss and dL/de for all embeddings at once (small: [B, D]);
  3. re-run each chunk's forward under jax.vjp with its dL/de slice and sum the parameter grads
     (lax.scan), so only one chunk's activations exist at a time.
Chunks are cut per data shard ([B] -> [n_chunks, shards * c]) so every chunk stays spread over all
devices and no rows move between devices.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from hbt_jax.errors import ConfigError


def to_chunks(x, shards: int, chunk: int):
  """[B, ...] -> [n, shards * chunk, ...]: chunk k holds rows k*chunk.. of every shard."""
  b = x.shape[0]
  per = b // shards
  if per % chunk:
    raise ConfigError(f"config.loss.grad_cache_chunk={chunk} must divide the per-shard batch {per}")
  n = per // chunk
  y = x.reshape((shards, n, chunk) + x.shape[1:])
  return jnp.swapaxes(y, 0, 1).reshape((n, shards * chunk) + x.shape[1:])


def from_chunks(y, shards: int):
  """Inverse of to_chunks: [n, shards * chunk, ...] -> [B, ...]."""
  n, sc = y.shape[:2]
  chunk = sc // shards
  z = y.reshape((n, shards, chunk) + y.shape[2:])
  return jnp.swapaxes(z, 0, 1).reshape((n * sc,) + y.shape[2:])


def value_and_grad(encode, loss_from_embeddings, params, groups, shards: int, chunk: int):
  """GradCache value-and-grad.

  encode(params, group_index, ids, mask, chunk_index) -> [rows, dim] embeddings.
  loss_from_embeddings(params, [emb per group]) -> (loss, aux); may use params (a learned
    temperature) directly - that part of the gradient is taken exactly in step 2.
  groups: [(ids [B_g, L], mask [B_g, L])] - e.g. queries, passages, flattened hard negatives.
  """
  chunked = [(to_chunks(ids, shards, chunk), to_chunks(mask, shards, chunk)) for ids, mask in groups]

  def embed_all(g, ids_c, mask_c):
    idx = jnp.arange(ids_c.shape[0])
    out = lax.map(lambda a: encode(lax.stop_gradient(params), g, a[0], a[1], a[2]),
                  (ids_c, mask_c, idx))
    return from_chunks(out, shards)

  embs = [embed_all(g, *c) for g, c in enumerate(chunked)]
  (loss, aux), (g_params, g_embs) = jax.value_and_grad(loss_from_embeddings, argnums=(0, 1),
                                                       has_aux=True)(params, embs)
  grads = g_params
  for g, (ids_c, mask_c) in enumerate(chunked):
    cot = to_chunks(g_embs[g], shards, chunk)

    def body(acc, xs, g=g):
      ids, mask, ct, i = xs
      _, vjp = jax.vjp(lambda p: encode(p, g, ids, mask, i), params)
      return jax.tree.map(jnp.add, acc, vjp(ct)[0]), None

    grads, _ = lax.scan(body, grads, (ids_c, mask_c, cot, jnp.arange(ids_c.shape[0])))
  return (loss, aux), grads
