// Creates cronlake's MongoDB users. The mongo image runs this once, on the first start of an empty data
// volume (docker-entrypoint-initdb.d), as the root user; later password changes in .env are NOT applied.
function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set in the mongo service's environment`);
  }
  return value;
}

const databases = [required("CRONLAKE_MONGO_DB"), required("CRONLAKE_MONGO_OPS_DB")];
const admin = db.getSiblingDB("admin");

// The jobs (edge): read and write both databases, including creating their indexes.
admin.createUser({
  user: required("MONGO_JOB_USER"),
  pwd: required("MONGO_JOB_PASSWORD"),
  roles: databases.map((name) => ({ role: "readWrite", db: name })),
});

// The dashboard: read only.
admin.createUser({
  user: required("MONGO_READER_USER"),
  pwd: required("MONGO_READER_PASSWORD"),
  roles: databases.map((name) => ({ role: "read", db: name })),
});
