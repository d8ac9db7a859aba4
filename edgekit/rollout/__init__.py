"""Rolling a bundle out to a fleet: waves gated on what the boards measure, with rollback.

    edgekit deploy BUNDLE --devices 'rpi4-*' --canary 10% --waves 25%,50%,100% \
        --db sqlite:///fleet.db --broker mqtt://broker --store store/ --store-url http://host:8080

A rollout lives in the collector's database (:mod:`edgekit.collector.rollout_tables`), so a
controller that dies is resumed by the next one, and a lease there gives it one owner. The
controller sends each wave's boards their desired state on their retained deploy topics
(:mod:`edgekit.deploy_wire`), follows their deployment events, reads the reports the collector
stores from the new bundle, and judges each wave by its gate (:mod:`edgekit.rollout.gate`); a
failed gate sends the boards back to their previous bundle.

Needs ``edgekit[collector]`` (SQLAlchemy; paho-mqtt once a controller connects).
"""

from edgekit._optional import require

require("sqlalchemy", extra="collector", package="SQLAlchemy")
