UPDATE "models" SET "status" = :status, "reason" = :reason WHERE "name" = :name AND "version" = :version
