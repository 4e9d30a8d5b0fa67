import sys

if len(sys.argv) > 1 and sys.argv[1] == "sweep":
    from .sweep import main as sweep_main

    sys.exit(sweep_main(sys.argv[2:]))
from .harness import main

sys.exit(main())
