from bsweep.cli import main

main()
