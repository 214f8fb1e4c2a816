import sys

from pyfunc_ensembler.cli import main

sys.exit(main())
