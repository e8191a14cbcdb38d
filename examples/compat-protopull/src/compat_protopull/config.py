"""Step 2: the options. Every field becomes a flag of `compat train protopull` (pull_weight ->
--pull-weight), a key of --config files and of --set. OldSpaceOptions adds --old-features and --dim-policy,
which every method against the old model should offer."""

from compat_core.config import OldSpaceOptions
from pydantic import Field


class ProtoPullConfig(OldSpaceOptions):
    pull_weight: float = Field(1.0, ge=0, description="Weight of the pull towards the old class prototype.")
