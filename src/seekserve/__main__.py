from seekserve.cli import main

main()
