"""Hidden inputs cover the contract: every family of inputs a chapter declares for an exercise
(`FAMILIES` in its hidden.py: an unconditional model, a batch of one, both sides of a rounding
rule, logits where a loss must be stable, ...) is exercised by the reference's hidden checks
under every secret, not only under some. The secret draws values inside the families."""
import pytest

from autograder import authoring, chapters as chapters_pkg, fidelity
from autograder.hidden import SECRET_ENV, exercised
from conftest import chapters

DECLARING = [c for c in chapters() if getattr(chapters_pkg.module(c, "hidden"), "FAMILIES", None)]
SECRETS = ("families-secret-one", "families-secret-two")


def test_the_chapters_this_round_covers_declare_families():
    assert {"03_vae", "05_diffusion", "06_latent_diffusion", "07_flow_matching"} <= set(DECLARING), DECLARING


@pytest.mark.parametrize("chapter", DECLARING)
def test_every_declared_family_is_exercised_under_every_secret(chapter, monkeypatch):
    declared = {(exercise, name) for exercise, names in chapters_pkg.module(chapter, "hidden").FAMILIES.items()
                for name in names}
    reference = authoring.solutions_path(chapter).read_text()
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    for secret in SECRETS:
        monkeypatch.setenv(SECRET_ENV, secret)
        exercised(clear=True)
        results = fidelity.run_tests(chapter, reference, hidden_only=True)
        assert not any(results.values()), {k: v for k, v in results.items() if v}
        seen = exercised(clear=True)
        missing = sorted(declared - seen)
        assert not missing, f"secret {secret!r}: families never exercised: {missing}"
        undeclared = sorted(f for f in seen if f[0] in {e for e, _ in declared} and f not in declared)
        assert not undeclared, f"recorded but not declared (a typo?): {undeclared}"
