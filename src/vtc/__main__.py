from vtc.cli import main

main()
