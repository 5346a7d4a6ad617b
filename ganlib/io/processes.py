"""One line of the Linux process table: /proc/<pid>/stat, read the one way that is safe.

The command name (field 2) is in parentheses and may itself hold spaces and
')', so the fields are counted from after the *last* ')'. Used to stop a
launcher's whole process tree (ganlib/io/logged_command.py) and to tell
whether a recorded process is still the same one (flows/reconcile.py): the
start time tells a reused pid from the original.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessStat:
    state: str        # field 3: R, S, D, Z (zombie), X (dead), ...
    parent: int       # field 4
    group: int        # field 5: the process group
    start_ticks: int  # field 22: clock ticks after boot

    @property
    def ended(self) -> bool:
        """A zombie or dead entry: the process holds nothing any more, though its pid still shows."""
        return self.state in ("Z", "X")


def process_stat(pid: int | str) -> ProcessStat:
    """The stat line of process `pid`. Raises OSError (FileNotFoundError when there is none, or /proc is absent)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        text = handle.read().decode(errors="replace")
    fields = text[text.rindex(")") + 2:].split()
    return ProcessStat(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
