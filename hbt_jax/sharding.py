"""Mesh and sharding rules: config.mesh -> jax.sharding.Mesh; logical axes -> mesh axes.

Batches are split over every mesh axis that holds data ('data' and 'fsdp': with FSDP every device
still gets a slice of the batch); parameters follow logical axis rules, so FSDP shards their 'embed'
(or 'vocab'/'mlp') dimension over 'fsdp' and data parallelism replicates them.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from hbt_jax.errors import ConfigError

BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_cfg: dict, devices=None) -> Mesh:
  """mesh_cfg: {'data': -1, 'fsdp': 1}; one -1 fills the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  names = list(mesh_cfg)
  sizes = [int(mesh_cfg[n]) for n in names]
  unknown = [n for n in names if n not in BATCH_AXES]
  if unknown:
    raise ConfigError(f"config.mesh has unknown axes {unknown}; known: {list(BATCH_AXES)}")
  if sizes.count(-1) > 1:
    raise ConfigError("config.mesh: at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"config.mesh={dict(mesh_cfg)}: {len(devices)} devices do not divide by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError(f"config.mesh={dict(mesh_cfg)} needs {math.prod(sizes)} devices; "
                     f"there are {len(devices)}")
  return jax.make_mesh(tuple(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names),
                       devices=devices)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every data-holding axis."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def logical_rules(rules: list | tuple | None) -> tuple[tuple[str, str | None], ...]:
  """Default: FSDP over the embedding dimension; everything else replicated."""
  if rules:
    return tuple((a, b) for a, b in rules)
  return (("embed", "fsdp"), ("vocab", None), ("mlp", None), ("heads", None), ("proj", None))


def param_shardings(abstract_boxed_params, mesh: Mesh, rules) -> object:
  """NamedShardings for a (boxed, abstract) param tree from its logical axis annotations."""
  specs = nn.get_partition_spec(abstract_boxed_params)
  with jax.sharding.use_mesh(mesh) if hasattr(jax.sharding, "use_mesh") else _null():
    mesh_specs = nn.logical_to_mesh(specs, logical_rules(rules))
  mesh_specs = jax.tree.map(lambda s: _drop_missing_axes(s, mesh), mesh_specs,
                            is_leaf=lambda x: isinstance(x, P))
  return jax.tree.map(lambda s: NamedSharding(mesh, s), mesh_specs,
                      is_leaf=lambda x: isinstance(x, P))


def _drop_missing_axes(spec: P, mesh: Mesh) -> P:
  return P(*[a if (a is None or a in mesh.axis_names) else None for a in spec])


class _null:
  def __enter__(self):
    return self

  def __exit__(self, *a):
    return False


def host_local_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the batch -> global arrays sharded over the batch axes."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()
          if np.ndim(v) >= 1}
