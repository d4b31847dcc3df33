import pytest
import torch

from bsweep.config import NORMS, ModelConfig, NormConfig
from bsweep.train.models import ChannelLRN, flatten, make_cnn, make_norm


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8), (3, 32, 32)])
def test_every_norm_builds_and_runs_on_1d_and_2d_inputs(kind, shape):
    torch.manual_seed(0)
    model = make_cnn(shape, 10, ModelConfig(width=16, depth=3, kernel_size=3), NormConfig(kind=kind, groups=4))
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()


def test_norm_layers_are_the_ones_named():
    assert isinstance(make_norm(NormConfig(kind="batch"), 8, 1), torch.nn.BatchNorm1d)
    assert isinstance(make_norm(NormConfig(kind="batch"), 8, 2), torch.nn.BatchNorm2d)
    gn = make_norm(NormConfig(kind="group", groups=4), 8, 2)
    assert isinstance(gn, torch.nn.GroupNorm) and gn.num_groups == 4
    assert make_norm(NormConfig(kind="layer"), 8, 1).num_groups == 1
    assert make_norm(NormConfig(kind="instance"), 8, 1).num_groups == 8
    assert isinstance(make_norm(NormConfig(kind="lrn"), 8, 1), ChannelLRN)


def test_weight_norm_reparametrizes_the_convs():
    model = make_cnn((1, 40), 10, ModelConfig(width=8, depth=2), NormConfig(kind="weight"))
    assert hasattr(model.features[0], "parametrizations")


def test_group_norm_groups_must_divide_channels():
    with pytest.raises(ValueError, match="divide"):
        make_norm(NormConfig(kind="group", groups=5), 8, 1)


@pytest.mark.parametrize("shape", [(4, 8, 10), (3, 6, 5, 7)])
@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_channel_lrn_is_torchs_local_response_norm(shape, size):
    # The band-matrix window must be torch's: the same neighbours (even sizes are asymmetric),
    # alpha / size, k and beta, forward and backward, to float32 rounding. Float64 makes the
    # comparison independent of the CPU's kernels.
    torch.manual_seed(0)
    x = (3 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()
    ours, theirs = ChannelLRN(shape[1], size, alpha=0.5, beta=0.75, k=2.0).double(), \
        torch.nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0)
    y = ours(x)
    torch.testing.assert_close(y, theirs(x), rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    (ours_grad,) = torch.autograd.grad(y, x, g)
    (theirs_grad,) = torch.autograd.grad(theirs(x), x, g)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # evaluation takes its own path (no autograd Function)
        torch.testing.assert_close(ours(x), y.detach(), rtol=0, atol=0)
    if x.dim() == 4:  # channels_last in, channels_last out, the same numbers both ways
        xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        yc = ours(xc)
        (grad_c,) = torch.autograd.grad(yc, xc, g.contiguous(memory_format=torch.channels_last))
        assert yc.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(yc, y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad_c, ours_grad, rtol=1e-12, atol=1e-12)


def test_flatten_sends_the_gradient_back_in_the_maps_layout_with_the_same_values():
    maps = torch.randn(4, 3, 1, 5)
    weights = torch.randn(4, 15)
    grads = []
    for fn in (flatten, lambda h: torch.flatten(h, 1)):
        h = maps.requires_grad_().contiguous(memory_format=torch.channels_last)  # not a leaf, as activations
        h.register_hook(grads.append)
        out = fn(h)
        assert torch.equal(out, torch.flatten(maps, 1))
        (out * weights).sum().backward()
    assert grads[0].is_contiguous(memory_format=torch.channels_last) and not grads[0].is_contiguous()
    assert grads[1].is_contiguous()  # what the last ReLU's backward had to read against its channels_last output
    assert torch.equal(grads[0], grads[1])


def test_a_channels_last_cnn_gets_every_activation_gradient_in_channels_last():
    net = make_cnn((1, 40), 10, ModelConfig(), NormConfig(kind="batch")).to(memory_format=torch.channels_last)
    layouts = []

    def watch(module, args, out):  # each layer's output gradient, as autograd hands it back
        out.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))

    for layer in net.features:
        layer.register_forward_hook(watch)
    net(torch.randn(8, 1, 40)).sum().backward()
    assert layouts == [True] * len(net.features)
