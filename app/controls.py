"""One message, two renderings: meshstep's findings, hints and errors are written once, for the command line, where
the way to act is a flag (`--override-reason`, `--set host=NAME`, `meshstep render waypoint --scope shop`). The
app renders them naming the control on its page that does the same (the Override button, the `host` parameter,
the Features page): `for_app` is applied at the app's edge to every message it shows (app/safe.py's md_message),
so that no page tells people to type a flag. A command of another tool in the text (istioctl, helm, kubectl) is
what people run themselves, in either face, and is left as it is.

Each rule names a phrase of the CLI's and the app's words for it; tests/app/test_no_cli_flags.py renders every
hint of the catalog, every finding of the demo and the corpus, every refusal a rendering can give, and every page,
and fails on a flag of the `meshstep` command left in the app."""
from __future__ import annotations

import re
from collections.abc import Callable

_SETTINGS_TELEMETRY = 'the "Prometheus URL or metrics file" field on the Settings page'
_OVERRIDE = 'the "Override and go on" button (an admin, with a reason)'
_NEW_PLAN = '"Start a new plan" on the Plan page'
_UPGRADE_TO = '"Upgrade to" field of the new plan'

# Another tool's command, from its name to the end of the code span, parenthesis, sentence or line: left alone.
_OTHER_TOOL = re.compile(r"\b(?:istioctl|helm|kubectl)\s[^`\n;)]*")
_SETS = re.compile(r"(?:([Pp]ass|[Uu]se|with|needs) )?((?:--set \w+=[^\s,;)]+(?: and)?\s?)+)")
_SET = re.compile(r"--set (\w+)=([^\s,;)]+)")
_PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_.-]*|…|\.\.\.|\d+(?:\.X)+(?:\.Y)?|1-X)$")


def _parameters(m: re.Match[str]) -> str:
    """`pass --set service=NAME` → set the "service" parameter; `--set api=istio` → the "api" parameter set to
    istio; several are listed together."""
    verb, sets = (m.group(1) or "").lower(), _SET.findall(m.group(2))
    values = [(name, None if _PLACEHOLDER.match(value) else value) for name, value in sets]
    if len(values) == 1:
        to = " to " if verb in ("pass", "use") else " set to "
        what = f'the "{values[0][0]}" parameter' + (f"{to}{values[0][1]}" if values[0][1] else "")
    else:
        what = "the " + " and ".join(f'"{n}"' + (f" ({v})" if v else "") for n, v in values) + " parameters"
    said = {"pass": "set ", "use": "set ", "with": "with ", "needs": "needs "}.get(verb, "") + what
    said = said[0].upper() + said[1:] if (m.group(1) or " ")[0].isupper() else said
    return said + " (on the Features page)" + (" " if m.group(2).endswith(" ") else "")


def _render(m: re.Match[str]) -> str:
    feature, scope, sets = m.group(1), m.group(2), _SET.findall(m.group(3) or "")
    with_params = (" with " + " and ".join(f"{n}={v.rstrip('.')}" for n, v in sets)) if sets else ""
    stop = "." if sets and sets[-1][1].endswith(".") else ""
    return f"render {feature} for {scope}{with_params} on the Features page{stop}"


# (the CLI's phrase, the app's words for it), tried in order: the longer phrases before the flags they hold.
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(p), r) for p, r in (
        (r"run `meshstep plan advance` again, or pass --override-reason to go on anyway",
         'press "Check the gate again", or go on anyway with ' + _OVERRIDE),
        (r"`?meshstep plan new --template ([\w-]+)`?", _NEW_PLAN + r" (the \1 template)"),
        (r"\(meshstep plan new --name …\) and advance it with --rehearse",
         f"({_NEW_PLAN}) with the Rehearse switch on"),
        (r"pass --rehearse to walk it on its overlay", 'switch on "Rehearse on the plan\'s overlay" to walk it'),
        (r"meshstep plan rollback --reason \"…\"", '"Roll back" on the Plan page, with a reason'),
        (r"`?meshstep plan resume --reason \"…\"`?", '"Resume the plan" on the Plan page, with a reason'),
        (r"`?meshstep plan rollback --gitops --reason …`?",
         '"Roll back" on the Plan page, with a reason,'),
        (r"`?meshstep render ([\w<>{}-]+) --scope ([\w<>{}.-]+)((?: --set [\w-]+=[^\s,;)`]+)*)`?", _render),
        (r"`?meshstep render ([\w<>{}-]+)`?", r"render \1 on the Features page"),
        (r"go past it as an admin with --override-reason", "go past it with " + _OVERRIDE),
        (r"(?:pass|with) --override-reason", "with " + _OVERRIDE),
        (r"--prometheus URL(?: \(or MESHSTEP_PROMETHEUS_URL\))?,? or --telemetry FILE \(the demo's: --telemetry demo\)",
         _SETTINGS_TELEMETRY + "; demo there reads the demo's metrics"),
        (r"--prometheus URL(?: \(or MESHSTEP_PROMETHEUS_URL\))?,? or --telemetry FILE", _SETTINGS_TELEMETRY),
        (r"--telemetry FILE or --prometheus URL", _SETTINGS_TELEMETRY),
        (r"--waves ('[^']*')", r'the wave sizes \1'),
        (r"no --prometheus URL given", "no Prometheus URL given (Settings)"),
        (r"check --prometheus / ", "check the Prometheus URL on the Settings page / "),
        (r"give --prometheus URL to", "give the Prometheus URL on the Settings page to"),
        (r"--(?:prometheus|telemetry) ", "telemetry "),
        (r"narrow --window", "narrow the window"),
        (r"--verify ([\w=.]+)", r'\1 in the "Verification thresholds" field'),
        (r"--verify '([^']*)'", r"the verification threshold '\1'"),
        (r"pass --scope mesh", 'choose "mesh" as the scope'),
        (r"pass --scope NAMESPACE", "choose a namespace as the scope"),
        (r" \(--reason\)", ""),
        (r"with --to VERSION", f"in the {_UPGRADE_TO}"),
        (r"without --to", f"with the {_UPGRADE_TO} empty"),
        (r" \(--to\)", ""),
        (r"pass --actor or set MESHSTEP_ACTOR", "enter your name in the sidebar"),
        (r"check --db / MESHSTEP_DATABASE_URL", "check the database meshstep ui was started with"),
        (r"--sources item", "the Clusters field's item"),
        (r"\(--source takes ([^)]*)\)", r"(a source is \1)"),
        (r"\(--format json lists them all\)", "(the JSON download lists them all)"),
        (_SETS.pattern, _parameters),
    ))


def for_app(text: str) -> str:
    """`text` (a finding, a hint, an error) as the app says it: each phrase of the command line's replaced by the
    app's control for it; commands of other tools left as they are."""
    out, at = [], 0
    for m in _OTHER_TOOL.finditer(text):
        out += [_rewrite(text[at:m.start()]), m.group()]
        at = m.end()
    return "".join([*out, _rewrite(text[at:])])


def _rewrite(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
