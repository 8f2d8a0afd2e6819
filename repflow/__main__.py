from repflow.cli import main

raise SystemExit(main())
