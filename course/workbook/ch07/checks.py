"""Chapter 07 visible checks (flow matching and rectified flow): the `check_*` functions the
notebook calls, the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the
stand-ins the checks use.

Every check runs on small inputs whose answers are known by construction (the chapter's
formulas written out for hand-picked numbers, fields whose flow is known in closed form,
draws replayed from a copy of the generator); none uses a reference solution. Hidden
checks, run when grading, use fresh random inputs and diffusers' FlowMatch schedulers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import Checks, check_choice, describe, tolerance
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_ddpm_time": "ABCD", "answer_flow_facts": "ABCDEF"}
QUIZ_SETS = {"answer_flow_facts"}
# The idea behind each question, shown with a wrong answer (it does not name the letter).
QUIZ_EXPLAIN = {
    "answer_ddpm_time": "divide the DDPM point by s = sqrt(a) + sqrt(1 - a) so that the two coefficients sum to 1; "
                        "the noise's coefficient is then t = sqrt(1 - a) / s",
    "answer_flow_facts": "weigh each statement against the definitions: the path's derivative, what an Euler step "
                         "does on a straight path, how many evaluations a Heun step takes, what reflow is meant to "
                         "keep, what s = 1 leaves of v_u + s (v_c - v_u), and where the logit-normal density puts "
                         "its mass",
}
_F64 = torch.float64

# Each diagnosis once; the visible checks, the hidden checks and the catalogue use them by key.
DIAGNOSES: dict[str, str] = {
    "keep_dtype": "keep the input's dtype: avoid torch.tensor(...) copies and .float()/.double()",
    "t_per_example": "one t per example: reshape t to (B, 1, ...) so it broadcasts over the other dimensions",
    "path_dtype": "keep x0's dtype (cast t to x0.dtype) and give each example its own t",
    "loss_graph": "compute the loss from the model's output with torch operations (no .item() or .detach())",
    "labels_not_passed": "the labels y must be passed to the model: model(x_t, t, y)",
    "labels_when_none": "without labels (y is None) call model(x_t, t): an unconditional model takes no y, "
                        "not even None",
    "euler_calls": "one velocity evaluation per step: n steps for the n + 1 timesteps, from the first to the last",
    "path_swapped": "the ends are swapped: t = 0 is data and t = 1 is noise, x_t = (1 - t) x0 + t eps",
    "path_sqrt": "these are DDPM's coefficients sqrt(1 - t), sqrt(t): the flow path is straight, (1 - t) x0 + t eps",
    "velocity_sign": "the velocity points from noise to data; with t = 1 at the noise, v = dx_t/dt = eps - x0",
    "target_x0": "the model must regress the velocity eps - x0, not the clean data x0",
    "target_eps": "the model must regress the velocity eps - x0, not the noise eps",
    "loss_sum": "the squared error must be averaged over all elements (F.mse_loss), not summed",
    "draws": "the draws do not replay from the generator passed in: t first (torch.rand(B, generator=generator, "
             "dtype=x0.dtype, device=x0.device)), then eps (torch.randn(x0.shape, ...)) with the same generator",
    "t_logit": "logit_normal: t = torch.sigmoid(torch.randn(B, generator=generator, ...)), one draw per example",
    "eps_given": "when eps is given (reflow pairs) it must be used as the noise, and no noise drawn",
    "euler_dt": "each step moves by (t_{i+1} - t_i) v(x, t_i): take the step size from the timesteps "
                "(they need not be evenly spaced)",
    "euler_time": "evaluate the velocity at the start of the step, v(x_i, t_i), with t a (B,) tensor of t_i",
    "in_place": "x1 was changed in place (x += ...): start from x = x1 and write x = x + h * v, "
                "which makes a new tensor",
    "heun_last": "the last step is a plain Euler step (2n - 1 evaluations for n steps)",
    "heun_average": "Heun's step averages the two slopes: x + h (v(x, t_i) + v(x', t_{i+1})) / 2, "
                    "with x' = x + h v(x, t_i)",
    "bridge_scale": "the DDPM point must be rescaled: divide by s = sqrt(a) + sqrt(1 - a), "
                    "and t = sqrt(1 - a) / s",
    "bridge_time": "t of a DDPM point is sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)), not 1 - a or sqrt(1 - a)",
    "eps_to_v": "v = eps - x0_hat with x0_hat = (x_t - t eps_hat) / (1 - t): v = (eps_hat - x_t) / (1 - t)",
    "v_to_eps": "from x_t = (1 - t) x0 + t eps and v = eps - x0: eps = x_t + (1 - t) v",
    "drop_rate": "drop where torch.rand(B, generator=generator) < p_uncond (one draw per label, from the "
                 "generator passed in)",
    "drop_inplace": "drop_labels must not modify y in place: return a new tensor (torch.where)",
    "cfg_inverted": "the formula is inverted: v_u + s (v_c - v_u), with v_c conditional and v_u unconditional",
    "cfg_as_w": "the scale was used as Ho & Salimans' w: v_u + s (v_c - v_u) = (1 + w) v_c - w v_u for s = 1 + w",
    "cfg_null": "the unconditional velocity must use null_label, not label 0",
    "straight_unweighted": "weight each step by its length t_i - t_{i+1} (divided by t_0 - t_n): "
                           "the timesteps need not be evenly spaced",
    "straight_norm": "the squared norm is summed over the data dimensions and averaged over the batch",
    "straight_end": "compare with the straight displacement x1 - x0, x0 the end of the Euler path",
    "straight_total": "divide the weighted sum by the time span t_0 - t_n: the timesteps need not run from 1 to 0",
    "straight_span": "divide the displacement x1 - x0 by the time span t_0 - t_n: (x1 - x0) / (t_0 - t_n) is the "
                     "velocity of a straight path, so S is 0 for one straight step on any grid",
    "inputs_in_place": "an input was changed in place (an operation ending in _, such as x.mul_(...), or +=): "
                       "compute a new tensor and leave every input unchanged",
    "bridge_dtype": "the result keeps x_t's dtype: cast t to x_t.dtype before combining (t may come in another "
                    "dtype)",
    "drop_fresh": "return a new tensor even when nothing is dropped (p_uncond = 0): torch.where(drop, ..., y), "
                  "not y itself",
    "drop_draws": "draw u = torch.rand(B, generator=generator) for every call, whatever p_uncond (one draw per "
                  "label), so that the generator advances the same way",
    "drop_global": "a draw ignored the generator passed in: torch.rand(B, generator=generator, device=y.device)",
}


def _t(x, dtype=_F64) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype)


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def _call_keeping(c: Checks, name: str, fn, args: tuple, names: tuple, inputs: str):
    """Call `fn(*args)` and fail if it changed one of its tensor arguments in place."""
    given = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    out = c.call(fn, *args, inputs=inputs)
    for arg_name, before, now in zip(names, given, args):
        if isinstance(before, torch.Tensor):
            c.true(torch.equal(before, now), f"{name} must leave its input {arg_name} unchanged", inputs=inputs,
                   hint=DIAGNOSES["inputs_in_place"])
    return out


def _pair(c: Checks, out, what: str, inputs: str):
    c.true(isinstance(out, tuple) and len(out) == 2, f"{what} must return a pair (a tuple of two values)",
           inputs=inputs, got=f"{type(out).__name__}" + (f" of {len(out)}" if isinstance(out, (tuple, list)) else ""))
    return out


# ----------------------------------------------------------------------------- 1 the path

def check_path(flow_path, velocity_target) -> None:
    c = Checks("path")
    refuse_stand_in(c, "flow_path", flow_path)
    refuse_stand_in(c, "velocity_target", velocity_target)
    x0 = _t([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]])
    eps = _t([[0.5, 0.5], [-1.0, 2.0], [3.0, -3.0]])
    t = _t([0.0, 0.25, 1.0])
    inputs = "x0 = [[1, -1], [2, .5], [0, 3]], eps = [[.5, .5], [-1, 2], [3, -3]], t = [0, .25, 1]"
    x_t = c.call(flow_path, x0, eps, t, inputs=inputs)
    c.tensor("x_t", x_t, shape=(3, 2), dtype=_F64, inputs=inputs)
    tb = t.view(-1, 1)
    c.close("x_t", x_t, _t([[1.0, -1.0], [1.25, 0.875], [3.0, -3.0]]), **tolerance(_F64, 3), inputs=inputs, mistakes={
        DIAGNOSES["path_swapped"]: tb * x0 + (1 - tb) * eps,
        DIAGNOSES["path_sqrt"]: (1 - tb).sqrt() * x0 + tb.sqrt() * eps,
    }, hint=DIAGNOSES["t_per_example"])
    # images: float32 data, float64 t, three channels, non-square
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 5, generator=g)
    eps = torch.randn(2, 3, 4, 5, generator=g)
    t = _t([0.75, 0.5])
    inputs = "x0, eps (2, 3, 4, 5) float32, t = [.75, .5] float64"
    x_t = _call_keeping(c, "flow_path", flow_path, (x0.clone(), eps.clone(), t.clone()), ("x0", "eps", "t"), inputs)
    c.tensor("x_t", x_t, shape=(2, 3, 4, 5), dtype=torch.float32, inputs=inputs)
    want = torch.cat([0.25 * x0[:1].double() + 0.75 * eps[:1].double(), 0.5 * x0[1:].double() + 0.5 * eps[1:].double()])
    c.close("x_t", x_t, want, **tolerance(torch.float32, 4), inputs=inputs,
            hint=DIAGNOSES["path_dtype"])
    inputs = "x0 = [[1, -1]], eps = [[.5, .5]]"
    v = c.call(velocity_target, _t([[1.0, -1.0]]), _t([[0.5, 0.5]]), inputs=inputs)
    c.tensor("v", v, shape=(1, 2), dtype=_F64, inputs=inputs)
    c.close("v", v, _t([[-0.5, 1.5]]), atol=1e-12, inputs=inputs, mistakes={DIAGNOSES["velocity_sign"]: _t([[0.5, -1.5]])})
    v = c.call(velocity_target, x0, eps, inputs="x0, eps (2, 3, 4, 5) float32")
    c.tensor("v", v, shape=(2, 3, 4, 5), dtype=torch.float32, inputs="x0, eps (2, 3, 4, 5) float32")
    c.done()


# ----------------------------------------------------------------------------- 2 the loss

class _Recorder(nn.Module):
    """A stand-in velocity model: records its inputs, returns 0.5 x_t + w t."""

    def __init__(self, dtype=_F64):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3, dtype=dtype))
        self.calls = []

    def forward(self, x_t, t, *rest, **named):  # every extra argument is recorded, None included
        keep = lambda v: v.detach().clone() if torch.is_tensor(v) else v
        self.calls.append((x_t.detach().clone(), t.detach().clone(), [keep(v) for v in (*rest, *named.values())]))
        return 0.5 * x_t + self.w * t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))


def _replay(state, B, shape, dtype, logit_normal=False, draw_eps=True):
    g = torch.Generator().set_state(state)
    t = torch.sigmoid(torch.randn(B, generator=g, dtype=dtype)) if logit_normal else torch.rand(B, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype) if draw_eps else None
    return t, eps


def check_flow_matching_loss(flow_matching_loss) -> None:
    c = Checks("flow_matching_loss")
    refuse_stand_in(c, "flow_matching_loss", flow_matching_loss)
    B = 64
    x0 = (torch.arange(B * 6, dtype=_F64).view(B, 2, 3) % 5 - 2) / 2
    for dtype, logit in ((_F64, False), (torch.float32, False), (_F64, True)):
        model = _Recorder(dtype)
        g = torch.Generator().manual_seed(7)
        state = g.get_state()
        xd = x0.to(dtype)
        inputs = f"x0 (64, 2, 3) {str(dtype)[6:]}, generator seeded 7, logit_normal={logit}, a stand-in model " \
                 "v_hat = 0.5 x_t + 0.3 t"
        before = torch.random.get_rng_state()
        loss = c.call(flow_matching_loss, model, xd.clone(), generator=g, logit_normal=logit, inputs=inputs)
        c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used",
               inputs=inputs, hint=DIAGNOSES["draws"])
        c.tensor("loss", loss, shape=(), dtype=dtype, inputs=inputs)
        c.true(len(model.calls) == 1, "the model should be called exactly once, on the whole batch", inputs=inputs,
               got=f"{len(model.calls)} calls")
        x_t, t, rest = model.calls[0]
        c.true(not rest, "with y = None the model is called as model(x_t, t)", inputs=inputs,
               got=f"{len(rest)} extra argument(s): {rest}", hint=DIAGNOSES["labels_when_none"])
        c.tensor("t passed to the model", t, shape=(B,), dtype=dtype, inputs=inputs)
        t_want, eps = _replay(state, B, x0.shape, dtype, logit)
        c.close("t passed to the model", t, t_want, **tolerance(dtype), inputs=inputs,
                hint=DIAGNOSES["t_logit"] if logit else DIAGNOSES["draws"])
        tb = _bcast(t_want.double(), x0)
        x0d, epsd = xd.double(), eps.double()
        c.tensor("x_t passed to the model", x_t, shape=tuple(x0.shape), dtype=dtype, inputs=inputs)
        c.close("x_t passed to the model", x_t, (1 - tb) * x0d + tb * epsd, **tolerance(dtype, 4), inputs=inputs,
                mistakes={DIAGNOSES["path_swapped"]: tb * x0d + (1 - tb) * epsd}, hint=DIAGNOSES["draws"])
        v_hat = 0.5 * x_t.double() + 0.3 * tb
        c.close("loss", loss, ((v_hat - (epsd - x0d)) ** 2).mean(), **tolerance(dtype, 10, ops=4), inputs=inputs,
                mistakes={DIAGNOSES["velocity_sign"]: ((v_hat - (x0d - epsd)) ** 2).mean(),
                          DIAGNOSES["target_x0"]: ((v_hat - x0d) ** 2).mean(),
                          DIAGNOSES["target_eps"]: ((v_hat - epsd) ** 2).mean(),
                          DIAGNOSES["loss_sum"]: ((v_hat - (epsd - x0d)) ** 2).sum()})
        c.call(loss.backward, inputs=inputs)
        c.true(model.w.grad is not None, "no gradient reached the model's parameters", inputs=inputs,
               hint=DIAGNOSES["loss_graph"])
    # reflow pairs: the given eps is used, only t is drawn
    model = _Recorder()
    g = torch.Generator().manual_seed(8)
    state = g.get_state()
    eps = torch.flip(x0, dims=[0]) * 1.5
    y = torch.arange(B) % 10
    inputs = "x0 (64, 2, 3), eps given (reflow pairs), y = arange(64) % 10, generator seeded 8"
    loss = c.call(flow_matching_loss, model, x0.clone(), eps.clone(), y.clone(), g, inputs=inputs)
    c.true(len(model.calls) == 1, "the model should be called exactly once", inputs=inputs)
    x_t, t, rest = model.calls[0]
    t_want, _ = _replay(state, B, x0.shape, _F64, draw_eps=False)
    tb = _bcast(t_want, x0)
    c.close("x_t passed to the model", x_t, (1 - tb) * x0 + tb * eps, **tolerance(_F64, 4), inputs=inputs,
            hint=DIAGNOSES["eps_given"])
    c.true(torch.equal(g.get_state(), _state_after(state, B)), "only t may be drawn when eps is given",
           inputs=inputs, hint=DIAGNOSES["eps_given"])
    c.true(len(rest) == 1 and torch.equal(rest[0], y), DIAGNOSES["labels_not_passed"],
           inputs=inputs, got=f"extra arguments {[describe(r) for r in rest]}")
    c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
    c.done()


def _state_after(state, B):
    g = torch.Generator().set_state(state)
    torch.rand(B, generator=g, dtype=_F64)
    return g.get_state()


# ----------------------------------------------------------------------------- 3 samplers

class _Field:
    """A velocity field v(x, t) = a x + b t that records each call (x, t)."""

    def __init__(self, a: float, b: float):
        self.a, self.b, self.calls = a, b, []

    def __call__(self, x, t):
        if not (isinstance(t, torch.Tensor) and t.shape == x.shape[:1]):
            got = f"a {tuple(t.shape)} tensor" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
            raise TypeError(f"velocity must be given t as a ({x.shape[0]},) tensor in x's dtype "
                            f"(torch.full((B,), t_i, dtype=x.dtype)), got {got}")
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.a * x + self.b * t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def _check_times(c: Checks, field: _Field, want: list[float], B: int, dtype, inputs: str, name: str) -> None:
    c.true(len(field.calls) == len(want), f"{name} should call the velocity {len(want)} times",
           inputs=inputs, expected=len(want), got=len(field.calls),
           hint=DIAGNOSES["heun_last"] if name == "heun_sample" else DIAGNOSES["euler_calls"])
    for k, ((_, t), w) in enumerate(zip(field.calls, want)):
        c.tensor(f"t of velocity call {k}", t, shape=(B,), dtype=dtype, inputs=inputs)
        c.close(f"t of velocity call {k}", t, torch.full((B,), w, dtype=_F64), **tolerance(dtype), inputs=inputs,
                hint=DIAGNOSES["euler_time"])


def check_samplers(euler_sample, heun_sample) -> None:
    c = Checks("samplers")
    refuse_stand_in(c, "euler_sample", euler_sample)
    refuse_stand_in(c, "heun_sample", heun_sample)
    x1 = _t([[1.0, -2.0], [0.5, 4.0]])
    ts = _t([1.0, 0.5, 0.0])
    # v = -x: Euler multiplies by 1.5 per step; v = t adds -h t_i.
    for a, b, euler_want, heun_want in ((-1.0, 0.0, 2.25 * x1, 1.625 * 1.5 * x1),
                                        (0.0, 1.0, x1 - 0.75, x1 - 0.625)):
        inputs = f"velocity v(x, t) = {a:g} x + {b:g} t, x1 = [[1, -2], [.5, 4]], timesteps = [1, .5, 0]"
        f = _Field(a, b)
        x1_in = x1.clone()
        x0 = c.call(euler_sample, f, x1_in, ts.clone(), inputs=inputs)
        c.true(torch.equal(x1_in, x1), "euler_sample must leave x1 unchanged", inputs=inputs, hint=DIAGNOSES["in_place"])
        c.tensor("euler_sample", x0, shape=(2, 2), dtype=_F64, inputs=inputs)
        _check_times(c, f, [1.0, 0.5], 2, _F64, inputs, "euler_sample")
        c.close("euler_sample", x0, euler_want, **tolerance(_F64, 4, 4), inputs=inputs, hint=DIAGNOSES["euler_dt"])
        f = _Field(a, b)
        x1_in = x1.clone()
        x0 = c.call(heun_sample, f, x1_in, ts.clone(), inputs=inputs)
        c.true(torch.equal(x1_in, x1), "heun_sample must leave x1 unchanged", inputs=inputs, hint=DIAGNOSES["in_place"])
        c.tensor("heun_sample", x0, shape=(2, 2), dtype=_F64, inputs=inputs)
        _check_times(c, f, [1.0, 0.5, 0.5], 2, _F64, inputs, "heun_sample")
        heun_as_euler = euler_want
        heun_with_last = 1.625 ** 2 * x1 if a else x1 - 0.375 - 0.125
        c.close("heun_sample", x0, heun_want, **tolerance(_F64, 4, 4), inputs=inputs, mistakes={
            DIAGNOSES["heun_last"]: heun_with_last, DIAGNOSES["heun_average"]: heun_as_euler})
    # uneven timesteps, float32 images: each step moves by its own length
    x1 = torch.linspace(-2, 2, 2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    ts = torch.tensor([1.0, 0.7, 0.2, 0.0])
    inputs = "velocity v = -x, x1 (2, 3, 2, 2) float32, timesteps = [1, .7, .2, 0] (uneven)"
    f = _Field(-1.0, 0.0)
    x0 = c.call(euler_sample, f, x1.clone(), ts.clone(), inputs=inputs)
    c.tensor("euler_sample", x0, shape=(2, 3, 2, 2), dtype=torch.float32, inputs=inputs)
    c.close("euler_sample", x0, 1.3 * 1.5 * 1.2 * x1.double(), **tolerance(torch.float32, 4, 4), inputs=inputs,
            mistakes={DIAGNOSES["euler_dt"]: (1 + 1 / 3) ** 3 * x1.double()})
    f = _Field(-1.0, 0.0)
    x0 = c.call(heun_sample, f, x1.clone(), ts.clone(), inputs=inputs)
    c.tensor("heun_sample", x0, shape=(2, 3, 2, 2), dtype=torch.float32, inputs=inputs)
    heun = lambda h: 1 + h + h * h / 2  # noqa: E731 - one Heun step of v = -x with step -h
    c.close("heun_sample", x0, heun(0.3) * heun(0.5) * 1.2 * x1.double(), **tolerance(torch.float32, 4, 4),
            inputs=inputs, hint=DIAGNOSES["heun_average"])
    c.true(len(f.calls) == 5, "heun_sample should call the velocity 2n - 1 = 5 times for n = 3 steps",
           inputs=inputs, got=len(f.calls))
    c.done()


# ----------------------------------------------------------------------------- 4 the bridge

def check_bridge(ddpm_to_flow, eps_to_velocity, velocity_to_eps) -> None:
    c = Checks("bridge")
    refuse_stand_in(c, "ddpm_to_flow", ddpm_to_flow)
    refuse_stand_in(c, "eps_to_velocity", eps_to_velocity)
    refuse_stand_in(c, "velocity_to_eps", velocity_to_eps)
    a = _t([0.64, 0.36, 1.0])
    x0 = _t([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]])
    eps = _t([[0.5, 0.5], [-1.0, 2.0], [3.0, -3.0]])
    ra, rb = a.sqrt().view(-1, 1), (1 - a).sqrt().view(-1, 1)
    z = ra * x0 + rb * eps
    inputs = "a DDPM point sqrt(a) x0 + sqrt(1 - a) eps with a = [.64, .36, 1], x0 = [[1, -1], [2, .5], [0, 3]], " \
             "eps = [[.5, .5], [-1, 2], [3, -3]]"
    out = _pair(c, c.call(ddpm_to_flow, z.clone(), a.clone(), inputs=inputs), "ddpm_to_flow", inputs)
    x_t, t = out
    c.tensor("t", t, shape=(3,), dtype=_F64, inputs=inputs)
    c.close("t", t, _t([3 / 7, 4 / 7, 0.0]), **tolerance(_F64), inputs=inputs,
            mistakes={DIAGNOSES["bridge_time"]: 1 - a}, hint=DIAGNOSES["bridge_time"])
    tb = t.view(-1, 1)
    c.tensor("x_t", x_t, shape=(3, 2), dtype=_F64, inputs=inputs)
    want = (1 - _t([3 / 7, 4 / 7, 0.0]).view(-1, 1)) * x0 + _t([3 / 7, 4 / 7, 0.0]).view(-1, 1) * eps
    c.close("x_t (the point on the flow path at t)", x_t, want, **tolerance(_F64, 4), inputs=inputs,
            mistakes={DIAGNOSES["bridge_scale"]: z})
    t = _t([3 / 7, 4 / 7, 0.0])
    inputs = "the same points on the flow path, t = [3/7, 4/7, 0], the true eps as eps_hat"
    v = c.call(eps_to_velocity, eps.clone(), want.clone(), t.clone(), inputs=inputs)
    c.tensor("v", v, shape=(3, 2), dtype=_F64, inputs=inputs)
    c.close("v (should be eps - x0)", v, eps - x0, **tolerance(_F64, 4, 4), inputs=inputs,
            mistakes={DIAGNOSES["velocity_sign"]: x0 - eps}, hint=DIAGNOSES["eps_to_v"])
    inputs = "the same points, t = [3/7, 4/7, 0], the true velocity eps - x0"
    e = c.call(velocity_to_eps, (eps - x0).clone(), want.clone(), t.clone(), inputs=inputs)
    c.tensor("eps", e, shape=(3, 2), dtype=_F64, inputs=inputs)
    c.close("eps", e, eps, **tolerance(_F64, 4, 4), inputs=inputs,
            mistakes={DIAGNOSES["v_to_eps"]: want + tb * (eps - x0)}, hint=DIAGNOSES["v_to_eps"])
    # float32 images with float64 alpha-bars: the data's dtype is kept
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 3, 2, 4, generator=g)
    a = _t([0.9, 0.2])
    inputs = "x_ddpm (2, 3, 2, 4) float32, a = [.9, .2] float64"
    out = _pair(c, c.call(ddpm_to_flow, z.clone(), a.clone(), inputs=inputs), "ddpm_to_flow", inputs)
    c.tensor("x_t", out[0], shape=(2, 3, 2, 4), dtype=torch.float32, inputs=inputs)
    c.tensor("t", out[1], shape=(2,), dtype=torch.float32, inputs=inputs)
    s = a.sqrt() + (1 - a).sqrt()
    c.close("x_t", out[0], z.double() / s.view(-1, 1, 1, 1), **tolerance(torch.float32, 4, 4), inputs=inputs)
    for fn, name in ((eps_to_velocity, "eps_to_velocity"), (velocity_to_eps, "velocity_to_eps")):
        inputs = f"{name}, float32 images (2, 3, 2, 4), t = [.25, .5] float64"
        r = _call_keeping(c, name, fn, (z.clone(), z.clone() * 0.5, _t([0.25, 0.5])), ("first input", "x_t", "t"),
                          inputs)
        c.true(not isinstance(r, torch.Tensor) or r.dtype == torch.float32, f"{name} must keep x_t's dtype",
               inputs=inputs, expected=torch.float32, got=getattr(r, "dtype", None), hint=DIAGNOSES["bridge_dtype"])
        c.tensor(name, r, shape=(2, 3, 2, 4), dtype=torch.float32, inputs=inputs)
    c.done()


# ----------------------------------------------------------------------------- 5 guidance

class _LabelModel(nn.Module):
    """A stand-in velocity model whose output is label + t in every element."""

    def forward(self, x, t, y):
        return torch.zeros_like(x) + (y.to(x.dtype) + t.to(x.dtype)).view(-1, *([1] * (x.dim() - 1)))


def check_guidance(drop_labels, guided_velocity) -> None:
    c = Checks("guidance")
    refuse_stand_in(c, "drop_labels", drop_labels)
    refuse_stand_in(c, "guided_velocity", guided_velocity)
    y = torch.arange(1000) % 10
    for p in (1.0, 0.3, 0.0):
        g = torch.Generator().manual_seed(5)
        inputs = f"y = arange(1000) % 10, p_uncond = {p}, null_label = 10, generator seeded 5"
        before = torch.random.get_rng_state()
        out = c.call(drop_labels, y, p, 10, g, inputs=inputs)
        c.true(torch.equal(before, torch.random.get_rng_state()), "the global random generator was used",
               inputs=inputs, hint=DIAGNOSES["drop_global"])
        c.tensor("labels", out, shape=(1000,), dtype=torch.int64, inputs=inputs)
        replay = torch.Generator().manual_seed(5)
        u = torch.rand(1000, generator=replay)
        want = torch.where(u < p, torch.full_like(y, 10), torch.arange(1000) % 10)
        c.close("labels", out, want, atol=0, rtol=0, inputs=inputs, hint=DIAGNOSES["drop_rate"])
        c.true(torch.equal(y, torch.arange(1000) % 10), "drop_labels must not modify y in place", inputs=inputs,
               hint=DIAGNOSES["drop_inplace"])
        c.true(out is not y and out.data_ptr() != y.data_ptr(), "drop_labels must return a new tensor, not y itself",
               inputs=inputs, hint=DIAGNOSES["drop_fresh"])
        c.true(torch.equal(g.get_state(), replay.get_state()), "the generator was not advanced by one draw per label",
               inputs=inputs, hint=DIAGNOSES["drop_draws"])
    model = _LabelModel()
    x = torch.zeros(3, 2, 2, 2)
    t = torch.tensor([0.0, 0.5, 0.25])
    y = torch.tensor([2, 7, 4])
    for s in (3.0, 0.0, 1.0):
        inputs = f"a stand-in model v = label + t, y = [2, 7, 4], t = [0, .5, .25], null_label = 10, scale = {s}"
        out = c.call(guided_velocity, model, x, t, y, s, 10, inputs=inputs)
        c.tensor("v", out, shape=(3, 2, 2, 2), dtype=torch.float32, inputs=inputs)
        full = lambda v: (v + t.double()).view(3, 1, 1, 1).expand(3, 2, 2, 2)  # noqa: E731
        yd = y.double()
        c.close(f"v at scale {s:g}", out, full(10 + s * (yd - 10)), **tolerance(torch.float32, 20, 4), inputs=inputs,
                mistakes={DIAGNOSES["cfg_inverted"]: full(yd + s * (10 - yd)),
                          DIAGNOSES["cfg_as_w"]: full(yd + s * (yd - 10)),
                          DIAGNOSES["cfg_null"]: full(s * yd)})
    c.done()


# ----------------------------------------------------------------------------- 6 straightness

def check_straightness(straightness) -> None:
    c = Checks("straightness")
    refuse_stand_in(c, "straightness", straightness)
    x1 = _t([[1.0, -2.0], [0.5, 4.0], [3.0, 0.0]])
    m = (x1 ** 2).sum(1).mean()
    cases = ((0.0, 0.7, [1.0, 0.5, 0.0], 0.0, x1 - 0.7, None),
             (-1.0, 0.0, [1.0, 0.5, 0.0], 0.0625 * m, 2.25 * x1, 0.0625 * m / 2),
             (-1.0, 0.0, [1.0, 0.8, 0.0], 0.0064 * m, 2.16 * x1, 0.0136 * m),
             (-1.0, 0.0, [0.8, 0.4], 0.0, 1.4 * x1, None),  # one Euler step is a straight path, on any grid
             (-1.0, 0.0, [0.8, 0.6, 0.4], 0.01 * m, 1.44 * x1, None))  # displacement and sum divided by 0.4
    for a, b, ts, s_want, x0_want, s_mean in cases:
        inputs = f"velocity v(x, t) = {a:g} x + {b:g}, x1 = [[1, -2], [.5, 4], [3, 0]], timesteps = {ts}"
        f = _Field(a, 0.0)
        field = (lambda x, t: f(x, t) + b) if b else f
        x1_in = x1.clone()
        out = _pair(c, c.call(straightness, field, x1_in, _t(ts), inputs=inputs), "straightness", inputs)
        c.true(torch.equal(x1_in, x1), "straightness must leave x1 unchanged", inputs=inputs, hint=DIAGNOSES["in_place"])
        S, x0 = out
        c.tensor("x0", x0, shape=(3, 2), dtype=_F64, inputs=inputs)
        c.close("x0 (the end of the Euler path)", x0, x0_want, **tolerance(_F64, 4, 4), inputs=inputs,
                hint=DIAGNOSES["euler_dt"])
        c.tensor("S", S, shape=(), dtype=_F64, inputs=inputs)
        wrong = {DIAGNOSES["straight_norm"]: s_mean} if s_mean is not None and ts[1] == 0.5 else \
            {DIAGNOSES["straight_unweighted"]: s_mean} if s_mean is not None else \
            {DIAGNOSES["straight_total"]: s_want * (ts[0] - ts[-1]),
             DIAGNOSES["straight_span"]: 0.4456 * m} if len(ts) == 3 and ts[0] - ts[-1] != 1 else \
            {DIAGNOSES["straight_span"]: 0.36 * m} if ts[0] - ts[-1] != 1 else {}
        c.close("S", S, s_want, **tolerance(_F64, 16, 4), inputs=inputs, mistakes=wrong,
                hint=DIAGNOSES["straight_end"])
        c.true(len(f.calls) == len(ts) - 1, f"straightness should evaluate the velocity n = {len(ts) - 1} times",
               inputs=inputs, got=len(f.calls))
    c.done()


def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])
