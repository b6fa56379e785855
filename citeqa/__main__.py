from citeqa.cli import main

raise SystemExit(main())
