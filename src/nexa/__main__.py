from nexa.cli.main import main

main()
