from tasktrail.cli import main

main()
