from iadbe.cli import main

raise SystemExit(main())
