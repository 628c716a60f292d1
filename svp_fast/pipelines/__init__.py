"""Selection-via-proxy pipelines.

* :func:`run_coreset`: selector (proxy or target) on all data -> subset by
  k-center / uncertainty / forgetting / random -> target on the subset.
* :func:`run_active`: random initial set -> rounds of (train the selector on
  the labelled set, select from the pool, reveal) -> target on the final set.

Both take any :class:`svp_fast.data.Dataset` and any registered model (by name,
or a :class:`ModelSetup` with its :class:`~svp_fast.proxy.TrainConfig`), time
every stage, return a :class:`RunResult`, and with ``out_dir`` write a run
folder: ``config.json``, ``selected_<method>.npy``, ``stages.csv``/``.json``,
``summary.csv``, ``rounds.csv`` (active learning), ``results.json``,
``plot.png`` and model checkpoints (``*.pt``). The folder appears only when
complete; an existing one is refused unless ``overwrite=True`` (see
:mod:`svp_fast.pipelines.run_folder`).
"""

from .active import ACTIVE_METHODS, active_sizes, run_active
from .common import METHODS, SELECTORS, STAGES, ModelSetup
from .coreset import FULL, run_coreset
from .results import RunResult, format_table
from .run_folder import RunFolder, RunFolderExistsError

__all__ = ["ACTIVE_METHODS", "FULL", "METHODS", "ModelSetup", "RunFolder", "RunFolderExistsError",
           "RunResult", "SELECTORS", "STAGES", "active_sizes", "format_table", "run_active",
           "run_coreset"]
