from rankdistill.cli import main

main()
