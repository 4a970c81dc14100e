from agentdeck.cli import main

raise SystemExit(main())
