import sys

if sys.argv[1:2] == ["launch"]:
    from serving.launch import main

    raise SystemExit(main(sys.argv[2:]))

if sys.argv[1:2] == ["demo"]:  # the serving half of `make demo`
    from serving.demo import main

    raise SystemExit(main(sys.argv[2:]))

if sys.argv[1:2] == ["gateway"]:  # needs no TensorFlow: it talks to a model server over gRPC
    from serving.gateway.cli import main

    raise SystemExit(main(sys.argv[2:]))

from serving.cli import main

raise SystemExit(main())
