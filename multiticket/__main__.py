from multiticket.interrupts import entry  # first: SIGINT/SIGTERM handlers before any other import

raise SystemExit(entry())
