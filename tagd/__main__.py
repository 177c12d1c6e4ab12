from tagd.cli import main

raise SystemExit(main())
