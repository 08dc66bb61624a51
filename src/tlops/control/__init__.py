"""`control`: what calls the EC2 and ElastiCache control APIs, from outside the VPC.

Nothing inside the VPC may (that would need a billed interface endpoint): the
router and the queue probe ask through request objects in the control bucket
(tlops.contract.control), whose event notification invokes this function.

- `actions`: the function itself: wake, stop, resize, sleep, observe;
- `node`: the GPU node as EC2 sees it (found by its tags, started, stopped);
- `queue`: the queue as ElastiCache sees it (this wake's replication group);
- `resize`: the EC2 steps towards a resize's goal;
- `state`: what control saw, recorded in the control bucket;
- `config`: its environment.
"""
