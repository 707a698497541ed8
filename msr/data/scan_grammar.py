"""SCAN's interpretation grammar (Lake & Baroni 2018, Figure 7), written out so a target can show
the command's structure: `data.preprocess=scan_structured` marks where each repetition ends.

A plain SCAN target is a flat run of actions, and a model must count out of `twice`, `thrice`
and `around` where it stops. The structured target marks every unit the command repeats:

    jump around left twice and walk
    I_TURN_LEFT I_JUMP .3 I_TURN_LEFT I_JUMP .2 I_TURN_LEFT I_JUMP .1 I_TURN_LEFT I_JUMP .0 |1
    I_TURN_LEFT I_JUMP .3 ... I_TURN_LEFT I_JUMP .0 |0 ; I_WALK

`.k` ends one of `around`'s four turns and `|k` one repetition of `twice`/`thrice`, each saying
how many are still to come; `;` ends the first half of `and`/`after`. So whether to go on is read off
the last mark, not counted out of the output's length. (The length split never trains on
`jump around left thrice`, 24 actions; it trains on `turn around left thrice`, whose turns carry
no action, and on `jump around left twice`: the same marks, after shorter units or fewer of
them.) The actions alone (the marks dropped) are exactly SCAN's target.
"""

from __future__ import annotations

from msr.errors import UserError

TURN_MARK, REPEAT_MARK, HALF_MARK = ".", "|", ";"
MARKS = frozenset({HALF_MARK, *(f"{TURN_MARK}{left}" for left in range(4)),
                   *(f"{REPEAT_MARK}{left}" for left in range(3))})

ACTIONS = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
TIMES = {"twice": 2, "thrice": 3}
CONJUNCTIONS = ("and", "after")


def structured_target(command: str) -> str:
    """The command's actions, a mark after each unit it repeats (see the module's doc)."""
    words = command.split()
    for conjunction in CONJUNCTIONS:
        if conjunction in words:
            cut = words.index(conjunction)
            first, second = words[:cut], words[cut + 1:]
            halves = (first, second) if conjunction == "and" else (second, first)  # "x after y": y, then x
            return f" {HALF_MARK} ".join(_repeated(half, command) for half in halves)
    return _repeated(words, command)


def actions_of(target: str) -> str:
    """A structured target's actions alone: SCAN's own target."""
    return " ".join(word for word in target.split() if word not in MARKS)


def _repeated(words: list[str], command: str) -> str:
    """S -> V twice | V thrice | V; each repetition ends with how many are left to write."""
    times = TIMES.get(words[-1], 1) if words else 1
    if times == 1:
        return _phrase(words, command)
    return _counted(_phrase(words[:-1], command), times, REPEAT_MARK)


def _counted(unit: str, times: int, mark: str) -> str:
    """`unit` written `times` times, each followed by the mark and how many are still to come."""
    return " ".join(f"{unit} {mark}{left}" for left in reversed(range(times)))


def _phrase(words: list[str], command: str) -> str:
    """V -> U | U direction | U opposite direction | U around direction (U: an action or `turn`)."""
    if not words or words[0] not in {*ACTIONS, "turn"} or len(words) > 3:
        raise _not_scan(command)
    act = [ACTIONS[words[0]]] if words[0] != "turn" else []
    if len(words) == 1:
        if not act:
            raise _not_scan(command)  # "turn" needs a direction
        return act[0]
    if words[-1] not in TURNS or (len(words) == 3 and words[1] not in ("opposite", "around")):
        raise _not_scan(command)
    turn = TURNS[words[-1]]
    if len(words) == 2:
        return " ".join([turn, *act])
    if words[1] == "opposite":
        return " ".join([turn, turn, *act])
    return _counted(" ".join([turn, *act]), 4, TURN_MARK)


def _not_scan(command: str) -> UserError:
    return UserError(f"data.preprocess=scan_structured: {command!r} is not a SCAN command (Lake & Baroni's "
                     f"grammar); use data.preprocess=scan for other commands in SCAN's format")
