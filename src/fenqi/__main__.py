from fenqi.cli import main

main()
