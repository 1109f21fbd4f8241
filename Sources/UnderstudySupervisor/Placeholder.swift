// UnderstudySupervisor
