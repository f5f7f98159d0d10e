"""Chapter 07: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch07.DIAGNOSES`), shared with the visible and hidden checks."""

from autograder.mutants import Alternative, Mistake
from workbook import ch07

D = ch07.DIAGNOSES
# t reshaped for 2-D data only breaks the shapes of the first input before any value can name it:
RAISED = r"raised \w+Error"
_PATH = "return (1 - t) * x0 + t * eps"
_T = "t = torch.sigmoid(torch.randn(B, **draw)) if logit_normal else torch.rand(B, **draw)"
_EPS = "if eps is None:\n        eps = torch.randn(x0.shape, **draw)"
_MSE = "return F.mse_loss(v_hat, eps - x0)"
_HEUN_LAST = "if i == n - 1:\n            x = x_euler\n        else:\n            v2"
_HEUN_AVG = "x = x + h * (v1 + v2) / 2"
_S = "S = sum(h * ((d - v) ** 2).flatten(1).sum(1).mean() for h, v in zip(hs, vs)) / span"
_GUIDE = "return v_u + scale * (v_c - v_u)"
_DROP = "drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond"

MISTAKES = [
    # path
    Mistake("path_checks", "flow_path", _PATH, "return t * x0 + (1 - t) * eps", D["path_swapped"]),
    Mistake("path_checks", "flow_path", _PATH, "return (1 - t).sqrt() * x0 + t.sqrt() * eps", D["path_sqrt"]),
    Mistake("path_checks", "flow_path", "t = t.to(x0.dtype).view(", "t = t.view(",
            D["keep_dtype"]),
    Mistake("path_checks", "flow_path", ".view(-1, *([1] * (x0.dim() - 1)))", ".view(-1, 1)",
            D["t_per_example"], expect=RAISED),
    Mistake("path_checks", "flow_path", _PATH, "return (1 - t) * x0 + t * eps.to(torch.float64)",
            D["keep_dtype"]),
    Mistake("path_checks", "velocity_target", "return eps - x0", "return x0 - eps", D["velocity_sign"]),
    # a batch of one: squeeze() leaves a 0-d t
    Mistake("path_checks", "flow_path", "t = t.to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))",
            "t = t.to(x0.dtype).squeeze()\n    t = t.reshape(t.shape[0], *([1] * (x0.dim() - 1)))",
            D["t_per_example"], expect=r"raised|wrong shape"),
    # an image-only reshape: on (B, D) points t broadcasts to (B, 1, B, D)
    Mistake("path_checks", "flow_path", ".view(-1, *([1] * (x0.dim() - 1)))", ".view(-1, 1, 1, 1)",
            D["t_per_example"], expect=r"wrong shape|raised"),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "v_hat = model(x_t, t) if y is None else model(x_t, t, y)",
            "v_hat = model(x_t, t, y)", D["labels_when_none"]),
    Mistake("path_checks", "velocity_target", "return eps - x0", "return eps",
            "the noise as the velocity", diagnosed=False),
    # loss
    Mistake("flow_matching_loss_checks", "flow_matching_loss", _MSE, "return F.mse_loss(v_hat, x0 - eps)",
            D["velocity_sign"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", _MSE, "return F.mse_loss(v_hat, x0)", D["target_x0"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", _MSE, "return F.mse_loss(v_hat, eps)",
            D["target_eps"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", _MSE,
            "return F.mse_loss(v_hat, eps - x0, reduction='sum')", D["loss_sum"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "x_t = (1 - tb) * x0 + tb * eps",
            "x_t = tb * x0 + (1 - tb) * eps", D["path_swapped"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "else torch.rand(B, **draw)",
            "else torch.rand(B, dtype=x0.dtype, device=x0.device)", D["draws"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", f"{_T}\n    {_EPS}",
            f"{_EPS}\n    {_T}", D["draws"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "torch.sigmoid(torch.randn(B, **draw)) if logit_normal else ",
            "", D["t_logit"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "torch.sigmoid(torch.randn(B, **draw))",
            "torch.sigmoid(torch.rand(B, **draw))", D["t_logit"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "if eps is None:\n        eps = torch.randn",
            "if True:\n        eps = torch.randn", D["eps_given"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "else torch.rand(B, **draw)",
            "else torch.rand(B, generator=generator, device=x0.device).to(x0.dtype)",
            D["draws"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "else torch.rand(B, **draw)",
            "else torch.rand(1, **draw).expand(B)", D["draws"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "model(x_t, t) if y is None else model(x_t, t, y)",
            "model(x_t, t)", D["labels_not_passed"]),
    Mistake("flow_matching_loss_checks", "flow_matching_loss", "eps = torch.randn(x0.shape, **draw)",
            "eps = torch.randn(x0.shape, generator=generator, device=x0.device)", D["draws"]),
    Mistake("path_checks", "flow_path", _PATH, "return x0.mul_(1 - t).add_(t * eps)", D["inputs_in_place"]),
    # samplers
    Mistake("samplers_checks", "euler_sample",
            "v = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))", "v = velocity(x, t)",
            D["euler_time"], expect="velocity must be given t as a"),
    Mistake("samplers_checks", "euler_sample", "x = x + (t_next - t) * v", "x = x - v / (len(timesteps) - 1)",
            D["euler_dt"]),
    Mistake("samplers_checks", "euler_sample", "torch.full((x.shape[0],), t, dtype",
            "torch.full((x.shape[0],), t_next, dtype", D["euler_time"]),
    Mistake("samplers_checks", "euler_sample", "x = x + (t_next - t) * v", "x = x + (t - t_next) * v",
            "the step goes the wrong way", diagnosed=False),
    Mistake("samplers_checks", "euler_sample", "range(len(timesteps) - 1)", "range(len(timesteps) - 2)",
            D["euler_calls"]),
    Mistake("samplers_checks", "euler_sample", "torch.full((x.shape[0],), t, dtype=x.dtype",
            "torch.full((x.shape[0],), t, dtype=torch.float64", D["keep_dtype"]),
    Mistake("samplers_checks", "euler_sample", "x = x + (t_next - t) * v", "x += (t_next - t) * v",
            D["in_place"]),
    Mistake("samplers_checks", "heun_sample",
            "v1 = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))",
            "v1 = velocity(x, timesteps[i].expand(x.shape[0]))", D["keep_dtype"],
            expect=r"velocity must be given t as a|must have x's dtype|keep"),
    # the timesteps' own dtype: float64 (uniform_timesteps) with float32 x
    Mistake("samplers_checks", "euler_sample",
            "v = velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))",
            "v = velocity(x, timesteps[i].expand(x.shape[0]))", D["keep_dtype"],
            expect=r"velocity must be given t as a|must have x's dtype|keep"),
    Mistake("samplers_checks", "heun_sample", _HEUN_AVG, "x += h * (v1 + v2) / 2", D["in_place"]),
    Mistake("samplers_checks", "heun_sample", _HEUN_LAST, "if False:\n            x = x_euler\n        else:\n            v2",
            D["heun_last"]),
    Mistake("samplers_checks", "heun_sample", _HEUN_AVG, "x = x + h * v2", "only the second slope",
            diagnosed=False),
    Mistake("samplers_checks", "heun_sample", _HEUN_AVG, "x = x + h * (v1 + v2)", "the slopes summed, not averaged",
            diagnosed=False),
    Mistake("samplers_checks", "heun_sample", "v2 = velocity(x_euler, torch.full((x.shape[0],), t_next,",
            "v2 = velocity(x_euler, torch.full((x.shape[0],), t,", D["euler_time"]),
    Mistake("samplers_checks", "heun_sample", _HEUN_AVG, "x = x_euler + h * (v1 + v2) / 2",
            "the corrector applied to the predictor", diagnosed=False),
    Mistake("samplers_checks", "heun_sample", "h = t_next - t", "h = -1 / n", "evenly spaced steps assumed",
            diagnosed=False),
    # bridge
    Mistake("bridge_checks", "ddpm_to_flow", "return x_ddpm / s.view(-1, *([1] * (x_ddpm.dim() - 1))), ",
            "return x_ddpm, ", D["bridge_scale"]),
    Mistake("bridge_checks", "ddpm_to_flow", "(1 - a).sqrt() / s", "(1 - a)", D["bridge_time"]),
    Mistake("bridge_checks", "ddpm_to_flow", "(1 - a).sqrt() / s", "(1 - a).sqrt()", D["bridge_time"]),
    Mistake("bridge_checks", "ddpm_to_flow", "a = a.to(x_ddpm.dtype)", "a = a", D["keep_dtype"]),
    Mistake("bridge_checks", "ddpm_to_flow", "s = a.sqrt() + (1 - a).sqrt()", "s = a.sqrt()",
            "rescaled by sqrt(a) only", diagnosed=False),
    Mistake("bridge_checks", "eps_to_velocity", "return (eps_hat - x_t) / (1 - t)", "return (x_t - eps_hat) / (1 - t)",
            D["velocity_sign"]),
    Mistake("bridge_checks", "eps_to_velocity", "return (eps_hat - x_t) / (1 - t)", "return eps_hat - x_t",
            D["eps_to_v"]),
    Mistake("bridge_checks", "eps_to_velocity", "return (eps_hat - x_t) / (1 - t)", "return (eps_hat - x_t) / t",
            "divided by t", diagnosed=False),
    Mistake("bridge_checks", "velocity_to_eps", "return x_t + (1 - t) * v", "return x_t + t * v", D["v_to_eps"]),
    Mistake("bridge_checks", "velocity_to_eps", "return x_t + (1 - t) * v", "return x_t - (1 - t) * v",
            D["v_to_eps"]),
    Mistake("bridge_checks", "eps_to_velocity", "t = t.to(x_t.dtype).view(", "t = t.view(", D["bridge_dtype"]),
    Mistake("bridge_checks", "velocity_to_eps", "t = t.to(x_t.dtype).view(", "t = t.view(", D["bridge_dtype"]),
    Mistake("bridge_checks", "eps_to_velocity", "return (eps_hat - x_t) / (1 - t)",
            "return x_t.sub_(eps_hat).div_(t - 1)", D["inputs_in_place"]),
    Mistake("bridge_checks", "velocity_to_eps", "return x_t + (1 - t) * v", "return x_t.add_((1 - t) * v)",
            D["inputs_in_place"]),
    # guidance
    Mistake("guidance_checks", "drop_labels", "device=y.device) < p_uncond", "device=y.device) >= p_uncond", D["drop_rate"]),
    Mistake("guidance_checks", "drop_labels", "torch.rand(y.shape, generator=generator, device=y.device)",
            "torch.rand(y.shape, device=y.device)", D["drop_global"]),
    Mistake("guidance_checks", "drop_labels", "return torch.where(drop, torch.full_like(y, null_label), y)",
            "y[drop] = null_label\n    return y", D["drop_inplace"]),
    Mistake("guidance_checks", "drop_labels", "torch.full_like(y, null_label), y)", "torch.zeros_like(y), y)",
            "dropped labels set to 0", diagnosed=False),
    Mistake("guidance_checks", "drop_labels", _DROP,
            "drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond / 2",
            "half the rate", diagnosed=False),
    Mistake("guidance_checks", "guided_velocity", "torch.full_like(y, null_label)", "torch.zeros_like(y)",
            D["cfg_null"]),
    Mistake("guidance_checks", "guided_velocity", _GUIDE, "return v_c + scale * (v_u - v_c)", D["cfg_inverted"]),
    Mistake("guidance_checks", "guided_velocity", _GUIDE, "return v_c + scale * (v_c - v_u)", D["cfg_as_w"]),
    Mistake("guidance_checks", "guided_velocity", "v_c, v_u = v[:B], v[B:]", "v_u, v_c = v[:B], v[B:]",
            D["cfg_inverted"]),
    Mistake("guidance_checks", "guided_velocity", _GUIDE, "return scale * v_c", "the unconditional part dropped",
            diagnosed=False),
    Mistake("guidance_checks", "drop_labels", "    drop = torch.rand(",
            "    if p_uncond == 0:\n        return y\n    drop = torch.rand(", D["drop_fresh"]),
    # straightness
    Mistake("straightness_checks", "straightness", _S, _S[:-len(" / span")], D["straight_total"]),
    Mistake("straightness_checks", "straightness", "d = (x1 - x) / span", "d = x1 - x", D["straight_span"]),
    Mistake("straightness_checks", "straightness", _S,
            "S = sum(((d - v) ** 2).flatten(1).sum(1).mean() for v in vs) / len(vs)", D["straight_unweighted"]),
    Mistake("straightness_checks", "straightness", "((d - v) ** 2).flatten(1).sum(1).mean()", "((d - v) ** 2).mean()",
            D["straight_norm"]),
    Mistake("straightness_checks", "straightness", "x = x + (t_next - t) * v", "x += (t_next - t) * v",
            D["in_place"]),
    Mistake("straightness_checks", "straightness", "d = (x1 - x) / span", "d = (x - x1) / span", D["straight_end"]),
    Mistake("straightness_checks", "straightness", "((d - v) ** 2).flatten(1).sum(1).mean()",
            "((d - v) ** 2).flatten(1).sum(1).sqrt().mean()", "the norm, not its square", diagnosed=False),
    Mistake("straightness_checks", "straightness", "x = x + (t_next - t) * v", "x = x - v / (len(timesteps) - 1)",
            D["euler_dt"]),
    # quiz
    Mistake("quiz_ddpm_time", "answer_ddpm_time", '"B"', '"A"', "t = 1 - a", diagnosed=False),
    Mistake("quiz_ddpm_time", "answer_ddpm_time", '"B"', '"C"', "t = sqrt(1 - a)", diagnosed=False),
    Mistake("quiz_flow_facts", "answer_flow_facts", '{"A", "B", "E"}', '{"A", "B", "C", "E"}',
            "Heun's cost", diagnosed=False),
    Mistake("quiz_flow_facts", "answer_flow_facts", '{"A", "B", "E"}', '{"A", "B", "E", "F"}',
            "logit-normal mass at the ends", diagnosed=False),
]

ALTERNATIVES = [
    Alternative("path_checks", "flow_path", '''
def flow_path(x0, eps, t):
    """torch.lerp from x0 to eps, with t unsqueezed in a loop."""
    t = t.to(x0.dtype)
    while t.dim() < x0.dim():
        t = t.unsqueeze(-1)
    return torch.lerp(x0, eps, t)
'''),
    Alternative("path_checks", "flow_path", '''
def flow_path(x0, eps, t):
    """float64 inside, back to the data's dtype; x0 + t (eps - x0)."""
    tt = t.double().reshape(t.shape[0], *([1] * (x0.dim() - 1)))
    return (x0.double() + tt * (eps.double() - x0.double())).to(x0.dtype)
'''),
    Alternative("path_checks", "velocity_target", '''
def velocity_target(x0, eps):
    return -(x0 - eps)
'''),
    Alternative("flow_matching_loss_checks", "flow_matching_loss", '''
def flow_matching_loss(model, x0, eps=None, y=None, generator=None, logit_normal=False):
    """Explicit keyword draws, 1 / (1 + exp(-u)), torch.lerp, y by keyword, mean by hand."""
    B = x0.shape[0]
    if logit_normal:
        u = torch.randn(B, generator=generator, device=x0.device, dtype=x0.dtype)
        t = 1 / (1 + torch.exp(-u))
    else:
        t = torch.rand(B, generator=generator, device=x0.device, dtype=x0.dtype)
    if eps is None:
        eps = torch.randn(*x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = torch.lerp(x0, eps, t.reshape(B, *([1] * (x0.dim() - 1))))
    v_hat = model(x_t, t) if y is None else model(x_t, t, y=y)
    return ((v_hat - (eps - x0)) ** 2).mean()
'''),
    Alternative("samplers_checks", "euler_sample", '''
def euler_sample(velocity, x1, timesteps):
    """Over pairs of consecutive times, t as a full_like of the batch."""
    x = x1.clone()
    ts = [float(s) for s in timesteps]
    for t, t_next in zip(ts[:-1], ts[1:]):
        t_batch = torch.full_like(x.flatten(1)[:, 0], t)
        x = x + (t_next - t) * velocity(x, t_batch)
    return x
'''),
    Alternative("samplers_checks", "heun_sample", '''
def heun_sample(velocity, x1, timesteps):
    """Heun steps in the loop, the last Euler step after it; h/2 v1 + h/2 v2."""
    ts = timesteps.tolist()
    B = x1.shape[0]
    at = lambda s: torch.full((B,), s, dtype=x1.dtype, device=x1.device)
    x = x1
    for t, t_next in zip(ts[:-2], ts[1:-1]):
        h = t_next - t
        v1 = velocity(x, at(t))
        v2 = velocity(x + h * v1, at(t_next))
        x = x + h / 2 * v1 + h / 2 * v2
    return x + (ts[-1] - ts[-2]) * velocity(x, at(ts[-2]))
'''),
    Alternative("bridge_checks", "ddpm_to_flow", '''
def ddpm_to_flow(x_ddpm, a):
    """t = 1 - sqrt(a) / s, the scale broadcast with unsqueeze."""
    a = a.to(x_ddpm.dtype)
    s = torch.sqrt(a) + torch.sqrt(1 - a)
    shape = (-1,) + (1,) * (x_ddpm.dim() - 1)
    return x_ddpm / s.reshape(shape), 1 - torch.sqrt(a) / s
'''),
    Alternative("bridge_checks", "eps_to_velocity", '''
def eps_to_velocity(eps_hat, x_t, t):
    """Through the clean-data estimate: x0_hat = (x_t - t eps) / (1 - t), v = eps - x0_hat."""
    t = t.to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
    x0_hat = (x_t - t * eps_hat) / (1 - t)
    return eps_hat - x0_hat
'''),
    Alternative("bridge_checks", "velocity_to_eps", '''
def velocity_to_eps(v, x_t, t):
    """eps = x0 + v with x0 = x_t - t v."""
    t = t.to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
    return (x_t - t * v) + v
'''),
    Alternative("guidance_checks", "drop_labels", '''
def drop_labels(y, p_uncond, null_label, generator=None):
    """A masked assignment on a copy."""
    out = y.clone()
    out[torch.rand(len(y), generator=generator, device=y.device) < p_uncond] = null_label
    return out
'''),
    Alternative("guidance_checks", "guided_velocity", '''
def guided_velocity(model, x_t, t, y, scale, null_label):
    """Two calls, (1 - s) v_u + s v_c."""
    v_c = model(x_t, t, y)
    v_u = model(x_t, t, torch.full_like(y, null_label))
    return (1 - scale) * v_u + scale * v_c
'''),
    Alternative("straightness_checks", "straightness", '''
def straightness(velocity, x1, timesteps):
    """Velocities stacked, weights as a tensor, einsum for the weighted mean."""
    ts = timesteps.to(x1.dtype)
    x, vs = x1, []
    for i in range(len(ts) - 1):
        v = velocity(x, ts[i].expand(x1.shape[0]).clone())
        vs.append(v)
        x = x + (ts[i + 1] - ts[i]) * v
    V = torch.stack(vs)  # (n, B, ...)
    span = ts[0] - ts[-1]
    err = ((x1 - x)[None] / span - V).pow(2).flatten(2).sum(2).mean(1)  # (n,)
    w = (ts[:-1] - ts[1:]) / span
    return torch.einsum("n,n->", w, err), x
'''),
]
