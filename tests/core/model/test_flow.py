"""The rectified-flow head learns a conditional distribution and samples it in one step."""

import torch

from michi_core.model.config import FlowConfig
from michi_core.model.flow import FlowHead


def test_one_step_samples_land_on_a_learned_conditional_target():
    # Toy task: cond c in R^8; target x1 = W c (a 2-D point per condition) + small noise (0.05).
    # After 400 steps the one-step sample must be within 0.15 (mean abs error) of W c, where an
    # untrained head is off by ~1.
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    w_true = torch.randn(8, 2, generator=g)
    head = FlowHead(FlowConfig(width=64, num_blocks=2, time_embed_dim=32), latent_dim=2, cond_dim=8)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)

    def batch(n):
        c = torch.randn(n, 8, generator=g)
        return c, c @ w_true * 0.5 + 0.05 * torch.randn(n, 2, generator=g)

    test_c, _ = batch(512)
    target = test_c @ w_true * 0.5
    before = (head.sample(test_c, generator=g) - target).abs().mean().item()
    first_loss = None
    for _ in range(400):
        c, x1 = batch(256)
        loss = head.loss(x1, c, generator=g)
        first_loss = first_loss if first_loss is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (head.sample(test_c, steps=1, generator=g) - target).abs().mean().item()
    assert loss.item() < 0.5 * first_loss
    assert before > 0.5, f"the untrained head was already close ({before:.3f}): the test proves nothing"
    assert after < 0.15, f"one-step samples are {after:.3f} from the target on average"
    several = (head.sample(test_c, steps=4, generator=g) - target).abs().mean().item()
    assert several < 0.2


def test_a_fresh_head_ignores_the_condition_until_trained():
    # AdaLN-Zero: zero-initialised modulation, so a new head's velocity ignores the condition.
    head = FlowHead(FlowConfig(width=16, num_blocks=2, time_embed_dim=8), latent_dim=4, cond_dim=6)
    x, t = torch.randn(3, 4), torch.rand(3)
    assert torch.allclose(head.velocity(x, t, torch.randn(3, 6)), head.velocity(x, t, torch.randn(3, 6)))
