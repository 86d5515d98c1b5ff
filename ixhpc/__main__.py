from ixhpc.cli import main

raise SystemExit(main())
