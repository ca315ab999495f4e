// Drills: back up, destroy, restore and compare, end to end, with the recipes as an operator runs
// them. Each drill task names the lab pieces it needs; drillTask (./lab.ts) brings up the ones that
// are down and stops them again afterwards, so every drill works from a cold machine.
//
//   npx zx tasks/run.ts drill:deis | drill:hoss | drill:xenon | drill:archive | drill:lambdastack     (make drill-deis …, make demo)
//   npx zx tasks/run.ts drill:faults                               (make fault-matrix: the recipes under faults)
import { archiveDrillTask } from "./archive.ts";
import { deisDrillTask } from "./deis.ts";
import { faultsDrillTask } from "./faults.ts";
import { hcoopDrillTask } from "./hcoop.ts";
import { hossDrillTask } from "./hoss.ts";
import { lambdastackDrillTask } from "./lambdastack.ts";
import { xenonDrillTask } from "./xenon.ts";

export default [archiveDrillTask, deisDrillTask, hossDrillTask, hcoopDrillTask, xenonDrillTask, lambdastackDrillTask, faultsDrillTask];
