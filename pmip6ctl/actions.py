"""What a protocol core returns: actions, of two kinds.

A Command asks the daemon to change the world: send a message, write a map
entry, install a route. A Notification only tells what happened, for the
counters and the log; applying it changes nothing. The daemon carries out
commands in the order given and counts notifications by their typed reason
(whose value is the metric label).

Neutral ground: protocol/ makes actions, io/ and the daemons take some of
them (a Send), and none of these imports the others through this module.
"""

from __future__ import annotations


class Action:
    """Anything a core returns."""

    __slots__ = ()


class Command(Action):
    """Something the daemon must carry out."""

    __slots__ = ()


class Notification(Action):
    """Something that happened, to count and log; changes nothing."""

    __slots__ = ()
