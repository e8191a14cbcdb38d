"""Core's own baseline goes through the same conformance kit that third-party plugins use."""

import compat_core.plugin
from compat_core.testing import run_conformance


def test_baseline_passes_the_conformance_kit(tmp_path):
    run_conformance(compat_core.plugin, "baseline", tmp_path, distribution="compat-core")


def test_kit_rejects_a_method_whose_options_clash(tmp_path):
    import pytest
    from compat_core.config import MethodConfig
    from compat_core.hookspecs import hookimpl
    from pydantic import Field

    class ClashingConfig(MethodConfig):
        lr: float = Field(0.1, description="clashes with the common --lr")

    class ClashingPlugin:
        @hookimpl
        def compat_register_methods(self, register):
            register("clash", config=ClashingConfig, factory="compat_core.methods.baseline:Baseline",
                     summary="a method whose option clashes")

    with pytest.raises(AssertionError, match="clash"):
        run_conformance(ClashingPlugin(), "clash", tmp_path)


def test_kit_rejects_a_method_whose_state_is_lost_on_resume(tmp_path):
    import pytest
    from compat_core.hookspecs import hookimpl
    from compat_core.methods.baseline import Baseline
    from compat_core.methods.configs import BaselineConfig

    class ForgetfulBaseline(Baseline):
        """Counts its steps in a plain attribute (not a registered buffer), so --resume restarts the count."""

        def __init__(self, config, ctx):
            super().__init__(config, ctx)
            self.steps = 0

        def forward(self, batch):
            terms = super().forward(batch)
            self.steps += 1
            return {**terms, "total": terms["total"] * (1.0 + 0.1 * self.steps)}

    class ForgetfulPlugin:
        @hookimpl
        def compat_register_methods(self, register):
            register("forgetful", config=BaselineConfig, factory=ForgetfulBaseline, summary="loses state on resume")

    with pytest.raises(AssertionError, match="resumed after epoch 1 differs"):
        run_conformance(ForgetfulPlugin(), "forgetful", tmp_path)
