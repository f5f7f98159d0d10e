"""Chapter 07 hidden checks: the path against diffusers' FlowMatchEulerDiscreteScheduler
(`scale_noise`), the samplers against its `step` and FlowMatchHeunDiscreteScheduler's, the
rest against the reference run in float64, all on inputs drawn from the grading seed;
draws are replayed by value from a copy of the generator; catalogued mistakes are named.

These checks run in the judge (`autograder.judge`): the learner's functions arrive as
`RemoteObject`s. What the learner's code acts on (a velocity field that records its calls,
a stand-in model for the loss, a random network for guidance) is built in the kernel by
harness snippets from torch alone (`twin`, `run`); the judge keeps its own copy."""
from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from autograder.hidden import draw_int, family, generators, grade_choice, here, in_kernel
from autograder.mutants import known_mistakes
from autograder.remote import run, twin
from . import solutions as ref
from workbook.ch07 import DIAGNOSES, QUIZ_EXPLAIN
from workbook.checks import Checks, tolerance

CH = "07_flow_matching"
_gen = generators(CH)
F64, F32 = torch.float64, torch.float32



def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(1, generator=g, dtype=F64).item()


def _shape(g: torch.Generator, B: int, images: bool | None = None) -> tuple[int, ...]:
    """(B, C, H, W) (always when `images`) or (B, D): channels and sizes vary, never empty."""
    if images or (images is None and draw_int(g, 0, 2)):
        return (B, draw_int(g, 1, 5), draw_int(g, 1, 5), draw_int(g, 2, 6))
    return (B, draw_int(g, 1, 7))


def _scale(*xs) -> float:
    return max(float(x.abs().max()) for x in xs)


# The learner's function called in the kernel, bringing back its arguments as they are
# after the call (an in-place change of an input would not travel back otherwise).
KEEP_INPUTS = '05_diffusion.keep_inputs'


def _keeping(c: Checks, name: str, fn, args: tuple, names: tuple, inputs: str, hints: dict | None = None):
    """Call the learner's `fn(*args)` in the kernel, fail if it changed one of its tensor
    arguments in place, and return what it returned."""
    res = c.call(in_kernel(name, KEEP_INPUTS, fn=fn, args=list(args)), inputs=inputs)
    out, after = res
    for arg_name, before, now in zip(names, args, after):
        if isinstance(before, torch.Tensor):
            same = isinstance(now, torch.Tensor) and now.shape == before.shape and torch.equal(now, before)
            c.true(same, f"{name} must leave its input {arg_name} unchanged", inputs=inputs,
                   expected=f"{arg_name} unchanged", got=f"{arg_name} changed in place",
                   hint=(hints or {}).get(arg_name, DIAGNOSES["inputs_in_place"]))
    return out


def _pair(c: Checks, out, what: str, inputs: str):
    c.true(isinstance(out, tuple) and len(out) == 2, f"{what} must return a pair (a tuple of two values)",
           inputs=inputs, got=type(out).__name__)
    return out


# ----------------------------------------------------------------------------- 1 the path

FAMILIES = {
    "flow_path": ("float32 images (B, C, H, W)", "float64 points (B, D)", "a batch of one"),
    "flow_matching_loss": ("an unconditional model, forward(x_t, t) only", "a class-conditional model given labels"),
    "euler_sample": ("float32 x1, float32 timesteps", "float32 x1, float64 timesteps (as uniform_timesteps)",
                     "float64 x1, uneven float64 timesteps"),
    "heun_sample": ("float32 x1, float32 timesteps", "float32 x1, float64 timesteps (as uniform_timesteps)",
                    "float64 x1, uneven float64 timesteps"),
}


def path(flow_path, velocity_target) -> None:
    c = Checks("path (hidden)")
    g = _gen("path")
    lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=_uniform(g, 1.0, 3.0))
    lib.set_timesteps(draw_int(g, 5, 30))
    # images (several times, one per example) in float32; points (B, D) in float64, then a batch of one
    for dtype, one in ((F32, False), (F64, False), (F64, True)):
        B = 1 if one else draw_int(g, 2, 6)
        shape = _shape(g, B, images=dtype == F32)
        family("flow_path", FAMILIES["flow_path"][2 if one else 0 if dtype == F32 else 1])
        x0 = torch.randn(shape, generator=g, dtype=dtype) * 2
        eps = torch.randn(shape, generator=g, dtype=dtype)
        idx = torch.randint(0, len(lib.timesteps), (B,), generator=g)
        t = lib.sigmas[idx].double()  # the scheduler's times, float64 for the learner
        inputs = f"x0, eps {shape} {str(dtype)[6:]}, t = {[round(v, 4) for v in t.tolist()]} float64"
        x_t = _keeping(c, "flow_path", flow_path, (x0.clone(), eps.clone(), t.clone()), ("x0", "eps", "t"), inputs)
        c.tensor("x_t", x_t, shape=shape, dtype=dtype, inputs=inputs)
        if dtype == F32:  # diffusers forms the path in float32: inside the float32 tolerance
            want = lib.scale_noise(x0.clone(), lib.timesteps[idx], eps.clone()).double()
            what = "x_t (vs diffusers' FlowMatchEulerDiscreteScheduler.scale_noise)"
        else:
            want = ref.flow_path(x0, eps, t)
            what = "x_t"
        c.close(what, x_t, want, **tolerance(dtype, _scale(x0, eps), 4), inputs=inputs,
                mistakes=known_mistakes(CH, "flow_path", lambda f: f(x0.clone(), eps.clone(), t.clone())))
        v = _keeping(c, "velocity_target", velocity_target, (x0.clone(), eps.clone()), ("x0", "eps"),
                     f"x0, eps {shape} {str(dtype)[6:]}")
        c.tensor("v", v, shape=shape, dtype=dtype, inputs=inputs)
        c.close("v", v, eps.double() - x0.double(), **tolerance(dtype, _scale(x0, eps)), inputs=inputs,
                mistakes=known_mistakes(CH, "velocity_target", lambda f: f(x0.clone(), eps.clone())))
    c.done()


# ----------------------------------------------------------------------------- 2 the loss

# A stand-in velocity model, in the kernel and in the judge: v_hat = a x_t + b tanh(3 t),
# recording what it is called with.
RECORDER = '07_flow_matching.recorder'
# The learner's loss on the stand-in, in the kernel: the loss, the model's calls, whether
# the global RNG was left alone, the gradient, the generator's state after the call.
LOSS = '07_flow_matching.loss'


def _replay(state, B, shape, dtype, logit, draw_eps):
    g = torch.Generator().set_state(state)
    t = torch.sigmoid(torch.randn(B, generator=g, dtype=dtype)) if logit else torch.rand(B, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype) if draw_eps else None
    return t, eps, g.get_state()


def flow_matching_loss(fn) -> None:
    c = Checks("flow_matching_loss (hidden)")
    g = _gen("flow_matching_loss")
    for dtype, logit, given, labels in ((F64, False, False, False), (F32, True, False, True),
                                        (F64, False, True, False), (F32, False, False, False)):
        B = draw_int(g, 40, 120)
        shape = _shape(g, B, images=True if dtype == F32 else None)
        x0 = torch.randn(shape, generator=g, dtype=dtype)
        eps = torch.randn(shape, generator=g, dtype=dtype) * 1.3 if given else None
        y = torch.randint(0, 10, (B,), generator=g) if labels else None
        a, b = _uniform(g, 0.2, 0.8), _uniform(g, 0.3, 1.0)
        gen = torch.Generator().manual_seed(draw_int(g, 0, 2**31))
        state = gen.get_state()
        inputs = (f"x0 {shape} {str(dtype)[6:]}, logit_normal={logit}, eps {'given' if given else 'None'}, "
                  f"y {'random labels' if labels else 'None'}, a stand-in model v_hat = {a:.3f} x_t + "
                  f"{b:.3f} tanh(3 t)")
        _, model = twin(RECORDER, a=a, b=b, dtype=dtype)
        family("flow_matching_loss", FAMILIES["flow_matching_loss"][1 if labels else 0])
        res = c.call(in_kernel("flow_matching_loss", LOSS, fn=fn, model=model, x0=x0.clone(),
                                eps=None if eps is None else eps.clone(), y=None if y is None else y.clone(),
                                generator=gen, logit_normal=logit), inputs=inputs)
        loss, calls, kept, grad, state_after = res
        c.true(kept, "the global random generator was used: every draw must come from the generator passed in",
               inputs=inputs, hint=DIAGNOSES["draws"])
        c.tensor("loss", loss, shape=(), dtype=dtype, inputs=inputs)
        c.true(len(calls) == 1, "the model should be called exactly once, on the whole batch", inputs=inputs,
               got=f"{len(calls)} calls")
        x_t, t, rest = calls[0]
        c.tensor("t passed to the model", t, shape=(B,), dtype=dtype, inputs=inputs)
        t_want, eps_drawn, state_want = _replay(state, B, shape, dtype, logit, not given)
        c.close("t passed to the model", t, t_want, **tolerance(dtype, 1, 4), inputs=inputs,
                hint=DIAGNOSES["t_logit"] if logit else DIAGNOSES["draws"])
        e = (eps if given else eps_drawn).double()
        tb = t_want.double().view(-1, *([1] * (len(shape) - 1)))
        c.tensor("x_t passed to the model", x_t, shape=shape, dtype=dtype, inputs=inputs)
        c.close("x_t passed to the model", x_t, (1 - tb) * x0.double() + tb * e,
                **tolerance(dtype, _scale(x0, e), 4), inputs=inputs,
                hint=DIAGNOSES["eps_given"] if given else DIAGNOSES["draws"])
        c.true(torch.equal(state_after, state_want), "the generator was not used exactly as stated",
               inputs=inputs, expected="t drawn first, then eps only when eps is None, nothing else",
               hint=DIAGNOSES["eps_given"] if given else DIAGNOSES["draws"])
        if labels:
            c.true(len(rest) == 1 and torch.equal(rest[0], y), DIAGNOSES["labels_not_passed"],
                   inputs=inputs, got=f"{len(rest)} extra arguments")
        else:
            c.true(len(rest) == 0, "with y = None the model is called as model(x_t, t)", inputs=inputs,
                   got=f"{len(rest)} extra argument(s): {rest}", hint=DIAGNOSES["labels_when_none"])
        v_hat = a * x_t.double() + b * torch.tanh(3 * tb)
        want = ((v_hat - (e - x0.double())) ** 2).mean()

        def mutant_value(f):
            rec = here(RECORDER, a=a, b=b, dtype=dtype)
            return f(rec, x0.clone(), eps=None if eps is None else eps.clone(), y=y,
                     generator=torch.Generator().set_state(state), logit_normal=logit)
        c.close("loss", loss, want, **tolerance(dtype, float(want) + _scale(x0, e) ** 2, 16), inputs=inputs,
                mistakes=known_mistakes(CH, "flow_matching_loss", mutant_value))
        c.true(isinstance(grad, torch.Tensor) and bool(grad.abs() > 0), "no gradient reached the model's parameters",
               inputs=inputs, hint=DIAGNOSES["loss_graph"])
        _keeping(c, "flow_matching_loss", fn, (model, x0.clone(), None if eps is None else eps.clone(),
                                               None if y is None else y.clone(), torch.Generator().set_state(state),
                                               logit), ("model", "x0", "eps", "y"), inputs)
    c.done()


# ----------------------------------------------------------------------------- 3 samplers

# A nonlinear velocity field, elementwise in x: v = a tanh(x) (1 + t) + b t^2 + k x; it
# records each call.
FIELD = '07_flow_matching.velocity_field'
CALLS = '07_flow_matching.calls'
CLEAR = '07_flow_matching.clear'


def _lib_sample(lib, field, x):
    """diffusers' sampling loop with a FlowMatch scheduler: the velocity at each of its
    `timesteps`, at time sigmas[i] (Heun's scheduler repeats the inner times)."""
    for i, ts in enumerate(lib.timesteps):
        x = lib.step(field(x, torch.full((len(x),), float(lib.sigmas[i]))), ts, x).prev_sample
    return x


def _check_calls(c: Checks, field, times: torch.Tensor, want_n: int, B: int, dtype, inputs: str, name: str,
                 heun: bool = False) -> None:
    calls = c.call(in_kernel("velocity", CALLS, field=field), inputs=inputs)
    run(CLEAR, field=field)
    c.true(isinstance(calls, list) and len(calls) == want_n,
           f"{name} should evaluate the velocity {want_n} times for {len(times) - 1} steps",
           inputs=inputs, expected=want_n, got=len(calls) if isinstance(calls, list) else calls,
           hint=DIAGNOSES["heun_last"] if heun else DIAGNOSES["euler_calls"])
    starts = times[:-1].double()
    want = torch.stack([starts, torch.cat([times[1:-1].double(), starts[-1:]])], 1).flatten()[:-1] if heun else starts
    for k, (t, w) in enumerate(zip(calls, want.tolist())):
        c.tensor(f"t of velocity call {k}", t, shape=(B,), dtype=dtype, inputs=inputs)  # a wrong dtype: keep_dtype
        c.close(f"t of velocity call {k}", t, torch.full((B,), w, dtype=F64), **tolerance(dtype), inputs=inputs,
                hint=DIAGNOSES["euler_time"])


def samplers(euler_sample, heun_sample) -> None:
    c = Checks("samplers (hidden)")
    g = _gen("samplers")
    for shift in (1.0, _uniform(g, 2.0, 4.0)):
        a, b, k = _uniform(g, 0.5, 1.5), _uniform(g, -1.0, 1.0), _uniform(g, -0.5, 0.5)
        here, there = twin(FIELD, a=a, b=b, k=k)
        B = draw_int(g, 1, 6)
        shape = _shape(g, B, images=True if shift == 1.0 else None)
        x1 = torch.randn(shape, generator=g)
        n = draw_int(g, 2, 9)
        inputs = f"x1 {shape} float32, a nonlinear field, {n} steps of diffusers' schedule with shift {shift:.3f}"
        lib = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        lib.set_timesteps(n)
        times = lib.sigmas.clone()
        if shift == 1.0:  # float64 timesteps with float32 x1, as the notebook's uniform_timesteps gives them
            times = times.double()
            inputs = inputs.replace("steps of", "float64 steps of")
        family("euler_sample", FAMILIES["euler_sample"][1 if times.dtype == F64 else 0])
        want = _lib_sample(lib, here, x1.clone())
        out = c.call(euler_sample, there, x1.clone(), times.clone(), inputs=inputs)
        _check_calls(c, there, times, n, B, F32, inputs, "euler_sample")  # first: t's dtype names the mistake
        c.tensor("euler_sample", out, shape=shape, dtype=F32, inputs=inputs)
        c.close("euler_sample (vs diffusers' FlowMatchEulerDiscreteScheduler)", out, want,
                **tolerance(F32, _scale(x1, want), 8 * n), inputs=inputs,
                mistakes=known_mistakes(CH, "euler_sample", lambda f: f(here, x1.clone(), times.clone())))
        lib = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        lib.set_timesteps(n)
        times = torch.cat([lib.sigmas[:1], lib.sigmas[1:-1:2], lib.sigmas[-1:]])
        if shift == 1.0:  # float64 timesteps with float32 x1, as for euler_sample
            times = times.double()
        family("heun_sample", FAMILIES["heun_sample"][1 if times.dtype == F64 else 0])
        want = _lib_sample(lib, here, x1.clone())
        inputs = inputs.replace("diffusers'", "diffusers' Heun")
        out = c.call(heun_sample, there, x1.clone(), times.clone(), inputs=inputs)
        _check_calls(c, there, times, 2 * n - 1, B, F32, inputs, "heun_sample", heun=True)
        c.tensor("heun_sample", out, shape=shape, dtype=F32, inputs=inputs)
        c.close("heun_sample (vs diffusers' FlowMatchHeunDiscreteScheduler)", out, want,
                **tolerance(F32, _scale(x1, want), 16 * n), inputs=inputs,
                mistakes=known_mistakes(CH, "heun_sample", lambda f: f(here, x1.clone(), times.clone())))
    # float64, uneven random timesteps, against the reference in float64
    here, there = twin(FIELD, a=_uniform(g, 0.5, 1.5), b=_uniform(g, -1.0, 1.0), k=_uniform(g, -0.5, 0.5))
    n = draw_int(g, 2, 7)
    inner = torch.sort(torch.rand(n - 1, generator=g, dtype=F64) * 0.9 + 0.05, descending=True).values
    times = torch.cat([torch.ones(1, dtype=F64), inner, torch.zeros(1, dtype=F64)])
    B = draw_int(g, 1, 6)
    shape = _shape(g, B)
    x1 = torch.randn(shape, generator=g, dtype=F64)
    inputs = f"x1 {shape} float64, a nonlinear field, uneven timesteps {[round(v, 3) for v in times.tolist()]}"
    family("euler_sample", FAMILIES["euler_sample"][2])
    family("heun_sample", FAMILIES["heun_sample"][2])
    for fn, name, r, n_calls in ((euler_sample, "euler_sample", ref.euler_sample, n),
                                 (heun_sample, "heun_sample", ref.heun_sample, 2 * n - 1)):
        out = _keeping(c, name, fn, (there, x1.clone(), times.clone()), ("velocity", "x1", "timesteps"), inputs,
                       hints={"x1": DIAGNOSES["in_place"]})
        c.tensor(name, out, shape=shape, dtype=F64, inputs=inputs)
        _check_calls(c, there, times, n_calls, B, F64, inputs, name, heun=name == "heun_sample")
        want = r(here, x1.clone(), times.clone())
        c.close(name, out, want, **tolerance(F64, _scale(x1, want), 8 * n), inputs=inputs,
                mistakes=known_mistakes(CH, name, lambda f: f(here, x1.clone(), times.clone())))
    c.done()


# ----------------------------------------------------------------------------- 4 the bridge

def _same_dtype(c: Checks, what: str, out, dtype, inputs: str) -> None:
    c.true(not isinstance(out, torch.Tensor) or out.dtype == dtype, f"{what} must have x_t's dtype", inputs=inputs,
           expected=dtype, got=getattr(out, "dtype", None), hint=DIAGNOSES["bridge_dtype"])


def bridge(ddpm_to_flow, eps_to_velocity, velocity_to_eps) -> None:
    c = Checks("bridge (hidden)")
    g = _gen("bridge")
    for dtype in (F32, F64):
        B = draw_int(g, 1, 7)
        shape = _shape(g, B, images=True if dtype == F32 else None)
        a = torch.rand(B, generator=g, dtype=F64) * 0.95 + 0.05
        a[0] = 1.0 if B > 1 and draw_int(g, 0, 2) else a[0]
        x0 = torch.randn(shape, generator=g, dtype=F64)
        eps = torch.randn(shape, generator=g, dtype=F64)
        ab = a.view(-1, *([1] * (len(shape) - 1)))
        z64 = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        z = z64.to(dtype)
        inputs = f"DDPM points {shape} {str(dtype)[6:]} of random x0, eps; a = {[round(v, 3) for v in a.tolist()]} " \
                 "float64"
        out = _pair(c, _keeping(c, "ddpm_to_flow", ddpm_to_flow, (z.clone(), a.clone()), ("x_ddpm", "a"), inputs),
                    "ddpm_to_flow", inputs)
        x_t, t = out
        x_want, t_want = ref.ddpm_to_flow(z.double(), a)
        c.tensor("t", t, shape=(B,), dtype=dtype, inputs=inputs)
        c.close("t", t, t_want, **tolerance(dtype, 1, 4), inputs=inputs,
                mistakes=known_mistakes(CH, "ddpm_to_flow", lambda f: f(z.double(), a.clone())[1]),
                hint=DIAGNOSES["bridge_time"])
        c.tensor("x_t", x_t, shape=shape, dtype=dtype, inputs=inputs)
        c.close("x_t", x_t, x_want, **tolerance(dtype, _scale(z64), 4), inputs=inputs,
                mistakes=known_mistakes(CH, "ddpm_to_flow", lambda f: f(z.double(), a.clone())[0]),
                hint=DIAGNOSES["bridge_scale"])
        # conversions on the flow path, t < 1
        tau = torch.rand(B, generator=g, dtype=F64) * 0.85
        xt = ref.flow_path(x0, eps, tau).to(dtype)
        e_hat = (eps + 0.3 * torch.randn(shape, generator=g, dtype=F64)).to(dtype)
        tt = tau.to(F64 if dtype == F32 else F32)  # t in the other dtype: the result keeps x_t's
        inputs = f"x_t, eps_hat {shape} {str(dtype)[6:]}, t = {[round(v, 3) for v in tt.tolist()]} {str(tt.dtype)[6:]}"
        v = _keeping(c, "eps_to_velocity", eps_to_velocity, (e_hat.clone(), xt.clone(), tt.clone()),
                     ("eps_hat", "x_t", "t"), inputs)
        _same_dtype(c, "v", v, dtype, inputs)
        c.tensor("v", v, shape=shape, dtype=dtype, inputs=inputs)
        v_want = ref.eps_to_velocity(e_hat.double(), xt.double(), tt.double())
        c.close("v", v, v_want, **tolerance(dtype, _scale(xt, e_hat), 16), inputs=inputs,
                mistakes=known_mistakes(CH, "eps_to_velocity",
                                        lambda f: f(e_hat.double(), xt.double(), tt.double())),
                hint=DIAGNOSES["eps_to_v"])
        vv = v_want.to(dtype)
        e = _keeping(c, "velocity_to_eps", velocity_to_eps, (vv.clone(), xt.clone(), tt.clone()), ("v", "x_t", "t"),
                     inputs + ", v = the velocity above")
        _same_dtype(c, "eps", e, dtype, inputs)
        c.tensor("eps", e, shape=shape, dtype=dtype, inputs=inputs)
        c.close("eps (the round trip eps_hat -> v -> eps)", e,
                ref.velocity_to_eps(vv.double(), xt.double(), tt.double()), **tolerance(dtype, _scale(xt, vv), 8),
                inputs=inputs, mistakes=known_mistakes(CH, "velocity_to_eps",
                                                       lambda f: f(vv.double(), xt.double(), tt.double())),
                hint=DIAGNOSES["v_to_eps"])
    c.done()


# ----------------------------------------------------------------------------- 5 guidance

# A random network of (x, t, y), per example: in the kernel and in the judge.
NET = '07_flow_matching.net'
# The learner's drop_labels in the kernel: its output, y after the call (an in-place change
# would not travel back otherwise), whether the global RNG was left alone.
DROP = '07_flow_matching.drop'


def guidance(drop_labels, guided_velocity) -> None:
    c = Checks("guidance (hidden)")
    g = _gen("guidance")
    for p in (_uniform(g, 0.05, 0.6), 1.0, 0.0):
        null = draw_int(g, 10, 100)
        B = draw_int(g, 200, 2000)
        y = torch.randint(0, 10, (B,), generator=g)
        seed = draw_int(g, 0, 2**31)
        inputs = f"{B} random labels, p_uncond = {p:.3f}, null_label = {null}, a seeded generator"
        res = c.call(in_kernel("drop_labels", DROP, fn=drop_labels, y=y.clone(), p_uncond=p, null_label=null,
                                generator=torch.Generator().manual_seed(seed)), inputs=inputs)
        out, y_after, kept, fresh, state_after = res
        c.true(kept, "the global random generator was used: draw with the generator passed in", inputs=inputs,
               hint=DIAGNOSES["drop_global"])
        c.tensor("labels", out, shape=(B,), dtype=torch.int64, inputs=inputs)
        c.true(isinstance(y_after, torch.Tensor) and torch.equal(y_after, y), "drop_labels must not modify y in place",
               inputs=inputs, hint=DIAGNOSES["drop_inplace"])
        c.true(fresh, "drop_labels must return a new tensor, not y itself", inputs=inputs, hint=DIAGNOSES["drop_fresh"])
        replay = torch.Generator().manual_seed(seed)
        u = torch.rand(B, generator=replay)
        c.true(torch.equal(state_after, replay.get_state()), "the generator was not advanced by one draw per label",
               inputs=inputs, expected="one torch.rand(B, generator=generator) draw", hint=DIAGNOSES["drop_draws"])
        want = torch.where(u < p, torch.full_like(y, null), y)
        c.close("labels", out, want, atol=0, rtol=0, inputs=inputs, hint=DIAGNOSES["drop_rate"],
                mistakes=known_mistakes(CH, "drop_labels",
                                        lambda f: f(y.clone(), p, null, torch.Generator().manual_seed(seed))))
    null = draw_int(g, 10, 50)
    net, net_there = twin(NET, table=torch.randn(null + 1, generator=g))
    for scale in (_uniform(g, 1.5, 6.0), 0.0, 1.0):
        B = draw_int(g, 1, 6)
        shape = _shape(g, B, images=True if scale > 1 else None)
        x = torch.randn(shape, generator=g)
        t = torch.rand(B, generator=g)
        yy = torch.randint(0, null, (B,), generator=g)
        inputs = f"a random network, x {shape} float32, random t and y, scale = {scale:.3f}, null_label = {null}"
        out = _keeping(c, "guided_velocity", guided_velocity, (net_there, x.clone(), t.clone(), yy.clone(), scale, null),
                       ("model", "x_t", "t", "y"), inputs)
        c.tensor("v", out, shape=shape, dtype=F32, inputs=inputs)
        want = ref.guided_velocity(net, x.double(), t.double(), yy, scale, null)
        c.close("v", out, want, **tolerance(F32, 1 + 2 * scale, 8), inputs=inputs,
                mistakes=known_mistakes(CH, "guided_velocity",
                                        lambda f: f(net, x.double(), t.double(), yy.clone(), scale, null)))
    c.done()


# ----------------------------------------------------------------------------- 6 straightness

def straightness(fn) -> None:
    c = Checks("straightness (hidden)")
    g = _gen("straightness")
    # the last grid does not run from 1 to 0: the displacement and S are divided by the time span t_0 - t_n
    for dtype, (first, last) in ((F64, (1.0, 0.0)), (F32, (1.0, 0.0)), (F64, (_uniform(g, 0.6, 0.9), _uniform(g, 0.1, 0.4)))):
        here, there = twin(FIELD, a=_uniform(g, 0.5, 1.5), b=_uniform(g, -1.0, 1.0), k=_uniform(g, -0.5, 0.5))
        n = draw_int(g, 2, 8)
        inner = torch.sort(torch.rand(n - 1, generator=g, dtype=F64) * 0.9 + 0.05, descending=True).values
        times = torch.cat([torch.ones(1, dtype=F64), inner, torch.zeros(1, dtype=F64)]) * (first - last) + last
        B = draw_int(g, 1, 6)
        shape = _shape(g, B, images=True if dtype == F64 else None)
        x1 = torch.randn(shape, generator=g, dtype=dtype)
        inputs = f"x1 {shape} {str(dtype)[6:]}, a nonlinear field, uneven timesteps " \
                 f"{[round(v, 3) for v in times.tolist()]}"
        out = _keeping(c, "straightness", fn, (there, x1.clone(), times.clone()), ("velocity", "x1", "timesteps"),
                       inputs, hints={"x1": DIAGNOSES["in_place"]})
        out = _pair(c, out, "straightness", inputs)
        S, x0 = out
        calls = c.call(in_kernel("velocity", CALLS, field=there), inputs=inputs)
        c.true(isinstance(calls, list) and len(calls) == n, f"straightness should evaluate the velocity n = {n} "
               "times", inputs=inputs, got=len(calls) if isinstance(calls, list) else calls)
        S_want, x0_want = ref.straightness(here, x1.double(), times.clone())
        c.tensor("x0", x0, shape=shape, dtype=dtype, inputs=inputs)
        c.close("x0 (the end of the Euler path)", x0, x0_want, **tolerance(dtype, _scale(x1, x0_want), 8 * n),
                inputs=inputs, hint=DIAGNOSES["euler_dt"])
        c.tensor("S", S, shape=(), dtype=dtype, inputs=inputs)
        c.close("S", S, S_want, **tolerance(dtype, float(S_want), 16 * n), inputs=inputs,
                mistakes=known_mistakes(CH, "straightness", lambda f: f(here, x1.double(), times.clone())[0]),
                hint=DIAGNOSES["straight_end"] if (first, last) == (1.0, 0.0) else DIAGNOSES["straight_total"])
    c.done()


# ----------------------------------------------------------------------------- quiz



def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=QUIZ_EXPLAIN[name])
