r"""Proxy fidelity: the proxy task's ranking of architectures against a longer training's.

  python launch.py proxy-check --config experiments/proxy_check.py --workdir /tmp/mnas_proxy_check
  python launch.py proxy-check --config experiments/proxy_check.py \
      --config.train=... (any proxy: the block is experiments/train.py's)

`num_archs` uniform samples of `space`, each trained with the proxy task `train` (its
`num_train_steps`) and with `reference_factor` times as many steps (mnas/search/proxy_check.py):
Kendall's tau, Spearman's rho and the top-k overlap of the two rankings. The default is the
quickstart's proxy task (experiments/quickstart.py) against a 10x longer training.
"""

import ml_collections

from experiments import quickstart


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """'': the quickstart's setting; 'tiny': seconds-sized (tests)."""
  q = quickstart.get_config()
  c = ml_collections.ConfigDict()
  c.space = q.space
  c.resolution = q.resolution
  c.seed = 0
  c.num_classes = q.num_classes  # For params / MACs in the store.
  c.num_archs = 20
  c.reference_factor = 10.0  # The reference training: this many times the proxy's steps.
  c.top_k = 5
  c.train = q.train
  if variant == 'tiny':
    c.num_archs, c.reference_factor, c.top_k = 4, 2.0, 2
    c.train.dataset = 'mnas_shapes/tiny'
    c.train.holdout = 100
    c.train.batch_size = 16
    c.train.num_train_steps = 4
    c.train.data_threads = 1
  elif variant:
    raise ValueError(f"experiments/proxy_check.py: variant {variant!r}; allowed: '', 'tiny'")
  return c
