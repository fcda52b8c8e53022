"""Imported by the local pool's fork server, first among its preloads, and by nothing else:
ties the fork server's life to the driver that started it (:mod:`multiticket.launch.lifeline`).
The workers it forks inherit this module already imported and tie themselves to the fork server."""

from multiticket.launch.lifeline import tie_to_parent

tie_to_parent()
