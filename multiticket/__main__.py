from multiticket.cli import main

raise SystemExit(main())
