import pytest
import torch

from robbench.errors import RobbenchError
from robbench.registry import get_attack
from robbench.threat import Victim, check_in_ball, project_to_ball


def test_projection_is_the_nearest_point_of_the_linf_ball():
    s = torch.tensor([[0.0, 1.0, -2.0]])
    far = torch.tensor([[5.0, 1.05, -9.0]])
    p = project_to_ball(far, s, 0.1)
    assert torch.allclose(p, torch.tensor([[0.1, 1.05, -2.1]]))
    inside = torch.tensor([[0.05, 0.95, -2.0]])
    assert torch.equal(project_to_ball(inside, s, 0.1), inside)


def test_ball_check_rejects_escapes_and_nans():
    s = torch.zeros(4, 3)
    assert check_in_ball(s + 0.1, s, 0.1, "x") == pytest.approx(0.1)
    with pytest.raises(RobbenchError, match="left the ε-ball"):
        check_in_ball(s + 0.1001, s, 0.1, "x")
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(RobbenchError, match="non-finite"):
        check_in_ball(bad, s, 0.1, "x")


def test_random_attack_stays_in_ball_and_is_seeded(smoke_agent):
    attack = get_attack("random")(0.075)
    s = torch.randn(50, 11) * 10
    a = attack.perturb(Victim(smoke_agent), s, torch.Generator().manual_seed(3))
    b = attack.perturb(Victim(smoke_agent), s, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a - s).abs().max() <= 0.075 + 1e-6
    assert (a - s).abs().max() > 0.05  # actually perturbs


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_invalid_eps_is_refused(eps):
    with pytest.raises(RobbenchError, match="ε must be"):
        get_attack("random")(eps)
