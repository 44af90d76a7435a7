from perfmodel._cli import main

raise SystemExit(main())
