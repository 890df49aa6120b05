from certwatch.cli import main

main()
