"""InfoNCE over the global batch with in-batch (and optional hard) negatives.

Called inside the jitted step on arrays sharded over the data axis: the [B, B] score matrix spans the
*global* batch, so every query sees every other pair's passage as a negative, whatever the sharding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def info_nce(q, p, temperature, neg=None, neg_valid=None, symmetric: bool = False):
  """q, p: [B, D] (L2-normalised: scores are cosine similarities); neg: [B, K, D]; -> (loss, aux)."""
  b = q.shape[0]
  cands = p
  if neg is not None and neg.shape[1]:
    cands = jnp.concatenate([p, neg.reshape(-1, neg.shape[-1])], axis=0)
  logits = (q @ cands.T).astype(jnp.float32) / temperature
  if neg is not None and neg.shape[1]:
    valid = jnp.concatenate([jnp.ones((b,), bool), neg_valid.reshape(-1)])
    logits = jnp.where(valid[None, :], logits, -jnp.inf)
  labels = jnp.arange(b)
  loss_qp = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[labels, labels])
  loss = loss_qp
  if symmetric:
    logits_pq = (p @ q.T).astype(jnp.float32) / temperature
    loss = 0.5 * (loss_qp + jnp.mean(jax.nn.logsumexp(logits_pq, axis=1) - logits_pq[labels, labels]))
  acc = jnp.mean(jnp.argmax(logits, axis=1) == labels)
  return loss, {"loss": loss, "accuracy": acc, "temperature": jnp.asarray(temperature, jnp.float32)}
