"""The code location: collects the asset graph and its resources.

Nothing imports this module but Dagster (``dagster dev -m assets.definitions``)
and the ``warehouse`` CLI. Loading it touches no database, network or model.
"""

import dagster as dg

from assets.resources import OperationalDatabase
from pipelines.settings import CHEEKO, COGNOVA

defs = dg.Definitions(
    assets=[],
    resources={
        "cheeko": OperationalDatabase(database=CHEEKO),
        "cognova": OperationalDatabase(database=COGNOVA),
    },
)
