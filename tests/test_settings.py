"""The settings declaration drives everything derived from it: TrainConfig, the range checks, the live
controls (traced: no recompilation), the `twnn train` flags, the dashboard's URL parameters and widgets.
And the one strict parser refuses loose input with one line naming the setting.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import pytest

from twnn_jax import settings
from twnn_jax.settings import DASHBOARD, DECLARATION, LIVE, SETTINGS, LiveControls, TrainConfig, parse_value
from twnn_jax.train import trainer_for


def _other_value(s: settings.Setting):
    """A valid value of `s` that is not its default."""
    if s.choices:
        return next(c for c in s.choices if c != s.default)
    return s.high if s.default != s.high else s.low


# ---- the library -----------------------------------------------------------------------------------
def test_config_fields_ranges_and_live_controls_come_from_the_declaration():
    fields = dataclasses.fields(TrainConfig)
    assert [f.name for f in fields] == [s.name for s in DECLARATION]
    assert [f.default for f in fields] == [s.default for s in DECLARATION]
    assert set(settings.RANGES) | set(settings.CHOICES) == set(SETTINGS)
    assert not set(settings.RANGES) & set(settings.CHOICES)
    assert LiveControls._fields == LIVE == tuple(s.name for s in DECLARATION if s.live)
    live = settings.live_controls(TrainConfig())
    for s in DECLARATION:
        if s.live:
            assert getattr(live, s.name).dtype == {int: jnp.int32, float: jnp.float32}[s.type], s.name
    # the old import paths keep working
    from twnn_jax import train

    for name in ("TrainConfig", "LiveControls", "live_controls", "check_value", "check_config", "RANGES", "CHOICES"):
        assert getattr(train, name) is getattr(settings, name), name
    # every declared value check: the default passes, a value out of range fails naming the setting
    for s in DECLARATION:
        settings.check_value(s.name, s.default)
        bad = "nonsense" if s.choices else (s.high * 2 + 1 if s.high > 0 else s.low - 1)
        with pytest.raises(ValueError, match=rf"^{s.name} must be "):
            settings.check_value(s.name, bad)
    with pytest.raises(ValueError, match="not live controls"):
        settings.live_controls(TrainConfig(), hidden=3)


def test_every_live_setting_is_traced():
    """Changing any live setting reaches the compiled loop as a value: no recompilation."""
    cfg = TrainConfig(task="sine", hidden=8, batch_size=16, lr=1e-2)
    trainer = trainer_for(cfg)
    state, _ = trainer.run(trainer.init(0), settings.live_controls(cfg), 1)
    compiled = trainer.run._cache_size()
    for name in LIVE:
        value = _other_value(SETTINGS[name])
        state, out = trainer.run(state, settings.live_controls(cfg, **{name: value}), 1)
        assert int(out["count"]) == 1
        assert trainer.run._cache_size() == compiled, name
        # and a config that differs only in it shares the trainer (the cache key leaves live settings out)
        assert trainer_for(dataclasses.replace(cfg, **{name: value})).run is trainer.run, name


LOOSE = [
    ("seed", "٣"),  # another script's digit
    ("seed", "３"),  # a full-width digit
    ("lr", "1_0e-3"),  # Python's digit separator
    ("tol", "nan"),
    ("tol", "inf"),
    ("gate", "-Infinity"),
    ("tol", " 0.001"),
    ("tol", "0x1p-3"),
    ("max_iter", "2.5"),
    ("seed", "1e400"),
    ("hidden", ""),
    ("solver", "Plain"),
    ("spectral_bound", "-1"),
]


@pytest.mark.parametrize("name,text", LOOSE)
def test_strict_parsing_refuses_loose_input_with_one_line(name, text):
    with pytest.raises(ValueError) as info:
        parse_value(name, text)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name} must be "), message
    assert SETTINGS[name].allowed in message


def test_plain_numbers_parse_and_ranges_read_as_people_write_them():
    assert parse_value("tol", "1e-5") == 1e-5 and parse_value("gate", "-2.5") == -2.5
    assert parse_value("lr", ".003") == 0.003 and parse_value("max_iter", "+40") == 40
    assert parse_value("seed", "2147483647") == 2**31 - 1 and parse_value("max_iter", "1e3") == 1000
    assert isinstance(parse_value("max_iter", "1e3"), int) and isinstance(parse_value("tol", "1"), float)
    assert parse_value("spectral_bound", "off") is None and parse_value("clip_norm", "0") is None
    assert parse_value("model", "default") is None and parse_value("model", "gru") == "gru"
    assert SETTINGS["seed"].allowed == "an integer in [0, 2147483647]"
    assert SETTINGS["tol"].allowed == "a number in [1e-08, 1.0]"
    for s in DECLARATION:
        assert "e+" not in s.allowed, s.allowed  # no 2.14748e+09
    long = "9" * 5000
    message = str(pytest.raises(ValueError, parse_value, "seed", long).value)
    assert len(message) < 200 and "…" in message
    with pytest.raises(ValueError, match="is not a setting"):
        parse_value("hiden", "8")


# ---- the CLI ---------------------------------------------------------------------------------------
def _train_parser():
    from twnn_jax import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_cli_flags_cover_exactly_the_declaration():
    train = _train_parser()
    group = next(g for g in train._action_groups if g.title and g.title.startswith("run settings"))
    assert [a.dest for a in group._group_actions] == [s.name for s in DECLARATION]
    assert {a.dest for a in train._actions} & set(SETTINGS) == set(SETTINGS)
    for action in group._group_actions:
        s = SETTINGS[action.dest]
        assert action.option_strings == ["--" + s.name.replace("_", "-")]
        assert s.help in action.help and s.allowed in action.help
        # the flag parses the default as written back, and another valid value
        for value in (s.default, _other_value(s)):
            args = train.parse_args([action.option_strings[0], s.show(value)])
            assert getattr(args, s.name) == value, (s.name, value)


@pytest.mark.parametrize("name,text", LOOSE)
def test_cli_refuses_loose_input_with_one_line(name, text, capsys, tmp_path):
    from twnn_jax import cli

    flag = "--" + name.replace("_", "-")
    assert cli.main(["train", f"{flag}={text}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and flag in err and f"{name} must be" in err, err
    assert not (tmp_path / "x").exists()


# ---- the dashboard: URL parameters and widgets -----------------------------------------------------
def test_url_parameters_cover_exactly_the_dashboard_settings():
    from twnn_dashboard import controls

    assert tuple(controls.CONTROLS) == DASHBOARD == tuple(s.name for s in DECLARATION if s.dashboard)
    assert controls.LIVE_KEYS == tuple(n for n in DASHBOARD if n in LIVE)
    from twnn_dashboard import session

    assert tuple(session.LIVE_NAMES) == LIVE
    for name, control in controls.CONTROLS.items():
        s = SETTINGS[name]
        # the page's own default where it has one (it opens on digits: controls.PAGE_DEFAULTS)
        assert (control.label, control.help, control.default) == (s.label, s.help,
                                                                  controls.PAGE_DEFAULTS.get(name, s.default))
        assert control.parse(control.format(control.default)) == control.default
        assert control.rebuilds == (not s.live)
        if s.log:
            assert control.kind == "log" and min(control.options) >= s.low and max(control.options) <= s.high
        for text in ("nan", "٣", "1_0"):
            with pytest.raises(ValueError, match=rf"^{name} must be "):
                control.parse(text)


def test_dashboard_widgets_and_url_cover_exactly_the_dashboard_settings():
    """Every dashboard setting, given in the URL, lands in its widget; no other setting has a widget, and a
    declared setting the dashboard does not show is an unknown URL parameter."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from twnn_dashboard import controls, session

    values = {}
    for name in DASHBOARD:
        control = controls.CONTROLS[name]
        s = SETTINGS[name]
        if name == "task":
            values[name] = s.default  # other tasks: test_dashboard_apptest.test_other_tasks_build_step_and_draw
        elif control.kind == "select":  # one that the library accepts with the values above (grow: only off)
            offered = controls.offered(name, {k: values[k] for k in values if k in controls.REBUILD_KEYS})
            values[name] = next((v for v in offered if v != s.default), s.default)
        elif control.kind == "log":
            values[name] = next(v for v in control.options if v != s.default)
        else:
            values[name] = s.default + control.step
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=120)
    for key, text in {**{k: controls.CONTROLS[k].format(v) for k, v in values.items()}, "hidden": "8"}.items():
        at.query_params[key] = text
    try:
        at.run()
        _check_widgets_and_url(at, values)
    finally:
        session.stop_all()


def _check_widgets_and_url(at, values: dict) -> None:
    from twnn_dashboard import controls

    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "Unknown URL parameter `hidden`" in warnings[0], warnings
    widgets = {}
    for kind in ("selectbox", "select_slider", "slider", "number_input", "text_input", "checkbox", "toggle",
                 "radio"):
        for widget in at.get(kind):
            if widget.key in SETTINGS:
                widgets[widget.key] = widget
    # every dashboard setting has a widget on sine (one left with a single acceptable value would have none: grow
    # on digits; test_dashboard_growth covers that)
    assert set(DASHBOARD) == set(widgets) and values["grow"] == "on"
    for name, widget in widgets.items():
        s = SETTINGS[name]
        assert widget.value == values[name], name
        assert widget.label == s.label and widget.help == s.help, name
    runner = at.session_state["_runner"]
    assert runner.live_values == {n: values[n] for n in LIVE}
    assert all(getattr(runner.config, n) == values[n] for n in DASHBOARD)
    written = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert {k: v for k, v in written.items() if k in controls.CONTROLS} == {
        k: controls.CONTROLS[k].format(v) for k, v in values.items()}
    assert set(written) - set(controls.CONTROLS) <= set(controls.VIEW_PARAMS)  # the network view's own
