import sys

from bitnet_sdk.cli.main import main

sys.exit(main())
