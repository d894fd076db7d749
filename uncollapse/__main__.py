from uncollapse.cli import main

main()
